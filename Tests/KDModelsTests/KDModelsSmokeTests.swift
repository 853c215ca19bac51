import XCTest
@testable import KDModels

final class KDModelsSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
