// Random and mutated input through the decoders: a peer can never crash the daemon.
import XCTest
import NIOCore
@testable import DRACCore
@testable import DRACRPC

final class FuzzTests: XCTestCase {
    /// A valid v1 or v2 ADD call, the base for mutations.
    func validCall(_ rng: inout SystemRandomNumberGenerator) -> [UInt8] {
        let v6 = Bool.random(using: &rng)
        let address: IPAddress = v6 ? .v6((0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) })
                                    : .v4(UInt32.random(in: 0...UInt32.max, using: &rng))
        let (version, args) = DRACCodec.encodeAddArguments(address)
        return DRACCodec.encodeCall(xid: UInt32.random(in: 0...UInt32.max, using: &rng), program: DRACProgram.number,
                                    version: version, procedure: DRACProgram.procAdd, arguments: args)
    }

    func testRandomAndMutatedCallsNeverCrashAndNeverAddFromGarbage() {
        var rng = SystemRandomNumberGenerator()
        var adds = 0
        for i in 0..<100_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int.random(in: 0...160, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = validCall(&rng)
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0 where !bytes.isEmpty: bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    case 1 where !bytes.isEmpty: bytes.removeLast(Int.random(in: 1...min(8, bytes.count), using: &rng))
                    default: bytes += (0..<Int.random(in: 1...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    }
                }
            }
            switch DRACCodec.decodeCall(bytes) {
            case .add(_, let version, _):
                adds += 1
                // An add is only ever decoded from a structurally complete call of exact size:
                // header, credential and verifier as their lengths say, then the arguments.
                XCTAssertEqual(bytes.count, framedLength(bytes) + (version == 1 ? 4 : 64))
            case .null(_, _):
                XCTAssertEqual(bytes.count, framedLength(bytes))
            case .errorReply(_, let reply, _):
                XCTAssertGreaterThanOrEqual(reply.count, 12)
            case .drop:
                break
            }
        }
        XCTAssertGreaterThan(adds, 0, "mutations never kept a call valid: the test would prove nothing")
    }

    /// 24 header bytes, then credential and verifier (flavor, length, body padded to 4).
    func framedLength(_ b: [UInt8]) -> Int {
        func word(_ at: Int) -> Int { Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3]) }
        let cred = (word(28) + 3) & ~3
        let verf = (word(36 + cred) + 3) & ~3
        return 24 + 8 + cred + 8 + verf
    }

    func testRandomStreamsThroughTheRecordDecoder() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var decoder = RPCRecordDecoder(maxRecord: 8192)
            var buffer = ByteBuffer()
            var failed = false
            for _ in 0..<Int.random(in: 1...20, using: &rng) where !failed {
                if Bool.random(using: &rng) {
                    buffer.writeBytes(RPCRecordDecoder.frame((0..<Int.random(in: 0...64, using: &rng)).map { _ in 0 }))
                } else {
                    buffer.writeBytes((0..<Int.random(in: 1...32, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
                }
                do {
                    while let record = try decoder.decode(buffer: &buffer) { XCTAssertLessThanOrEqual(record.count, 8192) }
                } catch {
                    failed = true   // the connection would be closed: that is the safe outcome
                }
            }
        }
    }
}
