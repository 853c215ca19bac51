import XCTest
@testable import KDComm

final class KDCommSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
