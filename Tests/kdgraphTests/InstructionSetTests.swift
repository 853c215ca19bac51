import XCTest
@testable import kdgraph

/// The start-up check of the kernels' instruction set (docs/ops.md, "Instruction set"): a CPU without
/// AVX2/FMA gets a message naming the missing flags and the portable build, instead of SIGILL.
final class InstructionSetTests: XCTestCase {
    let haswell = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2 f16c movbe\n"
    let old = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx\n"

    func testMissingFlagsAreNamed() throws {
        #if KDGRAPH_HASWELL
        XCTAssertNil(InstructionSet.unsupportedMessage(cpuinfo: haswell))
        let message = try XCTUnwrap(InstructionSet.unsupportedMessage(cpuinfo: old))
        XCTAssertTrue(message.contains("lacks avx2, fma, bmi2, f16c"), message)
        XCTAssertTrue(message.contains("KDGRAPH_PORTABLE=1 swift build -c release"), message)
        XCTAssertNil(InstructionSet.unsupportedMessage(cpuinfo: "no flags line"), "unreadable: no verdict")
        #else
        XCTAssertEqual(InstructionSet.required, [], "a portable build needs nothing")
        XCTAssertNil(InstructionSet.unsupportedMessage(cpuinfo: old))
        #endif
    }

    /// This machine runs the tests, so it has what the build needs.
    func testThisMachinePasses() {
        XCTAssertNil(InstructionSet.unsupportedMessage())
    }
}
