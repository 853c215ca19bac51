import XCTest
@testable import KDFormats

final class KDFormatsSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
