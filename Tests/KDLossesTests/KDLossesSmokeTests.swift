import XCTest
@testable import KDLosses

final class KDLossesSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
