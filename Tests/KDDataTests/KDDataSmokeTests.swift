import XCTest
@testable import KDData

final class KDDataSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
