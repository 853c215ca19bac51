import XCTest
@testable import KDTrain

final class KDTrainSmokeTests: XCTestCase {
    func testModuleLoads() { XCTAssertTrue(true) }
}
