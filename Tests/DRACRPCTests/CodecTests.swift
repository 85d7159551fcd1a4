// The DRAC/RPC codec: every well-formed call and every malformed-input class, without sockets.
import XCTest
import NIOCore
@testable import DRACCore
@testable import DRACRPC

final class CodecTests: XCTestCase {
    /// Builds a call by hand so that tests can break any field.
    func call(xid: UInt32 = 0x1234, type: UInt32 = 0, rpcvers: UInt32 = 2, prog: UInt32 = 900101, vers: UInt32 = 1,
              proc: UInt32 = 1, credFlavor: UInt32 = 0, cred: [UInt8] = [], credLength: UInt32? = nil,
              args: [UInt8] = [0xc0, 0xa8, 0x00, 0x64]) -> [UInt8] {
        var w = XDRWriter()
        w.uint32(xid); w.uint32(type); w.uint32(rpcvers); w.uint32(prog); w.uint32(vers); w.uint32(proc)
        w.uint32(credFlavor)
        if let credLength {
            w.uint32(credLength)
            return w.bytes + cred
        }
        w.opaque(cred)
        w.uint32(0); w.uint32(0)
        return w.bytes + args
    }

    func acceptStat(_ d: DRACCallDecoding) -> UInt32? {
        guard case .errorReply(_, let reply, _) = d else { return nil }
        var r = XDRReader(reply)
        _ = try? r.uint32(); _ = try? r.uint32()
        guard (try? r.uint32()) == 0 else { return nil }   // MSG_ACCEPTED
        _ = try? r.uint32(); _ = try? r.opaque(max: 400)
        return try? r.uint32()
    }

    func deniedStat(_ d: DRACCallDecoding) -> (UInt32, UInt32)? {
        guard case .errorReply(_, let reply, _) = d else { return nil }
        var r = XDRReader(reply)
        _ = try? r.uint32(); _ = try? r.uint32()
        guard (try? r.uint32()) == 1 else { return nil }   // MSG_DENIED
        guard let a = try? r.uint32(), let b = try? r.uint32() else { return nil }
        return (a, b)
    }

    func testV1AddAsOnTheWire() {
        // 192.168.0.100 travels as c0 a8 00 64 (INTEROP.md section 1).
        XCTAssertEqual(DRACCodec.decodeCall(call()), .add(xid: 0x1234, version: 1, address: IPAddress("192.168.0.100")!))
    }

    func testV2AddTakesLowByteOfSignExtendedChars() {
        var w = XDRWriter()
        let address = IPAddress("2001:db8::b8")!
        for b in address.bytes { w.int32(Int32(Int8(bitPattern: b))) }   // the stock client's encoding
        XCTAssertEqual(Array(w.bytes[60..<64]), [0xff, 0xff, 0xff, 0xb8])
        XCTAssertEqual(DRACCodec.decodeCall(call(vers: 2, args: w.bytes)), .add(xid: 0x1234, version: 2, address: address))
        // Zero-extended bytes (another encoder) are fine too.
        var z = XDRWriter()
        for b in address.bytes { z.uint32(UInt32(b)) }
        XCTAssertEqual(DRACCodec.decodeCall(call(vers: 2, args: z.bytes)), .add(xid: 0x1234, version: 2, address: address))
        // Our client encodes exactly like the stock one.
        XCTAssertEqual(DRACCodec.encodeAddArguments(address).bytes, w.bytes)
        XCTAssertEqual(DRACCodec.encodeAddArguments(address).version, 2)
        XCTAssertEqual(DRACCodec.encodeAddArguments(IPAddress("192.168.0.100")!).bytes, [0xc0, 0xa8, 0x00, 0x64])
    }

    func testV2ByteOutOfRangeIsGarbage() {
        var w = XDRWriter()
        for i in 0..<16 { w.uint32(i == 3 ? 0x100 : 1) }
        XCTAssertEqual(acceptStat(DRACCodec.decodeCall(call(vers: 2, args: w.bytes))), RPC.AcceptStat.garbageArgs.rawValue)
    }

    func testArgumentSizeMustBeExact() {
        let table: [(UInt32, [UInt8])] = [
            (1, []), (1, [1, 2]), (1, [1, 2, 3, 4, 5, 6, 7, 8]),
            (2, [UInt8](repeating: 0, count: 4)), (2, [UInt8](repeating: 0, count: 60)), (2, [UInt8](repeating: 0, count: 68)),
        ]
        for (vers, args) in table {
            XCTAssertEqual(acceptStat(DRACCodec.decodeCall(call(vers: vers, args: args))), RPC.AcceptStat.garbageArgs.rawValue, "v\(vers) \(args.count) bytes")
        }
    }

    func testNullProcedure() {
        XCTAssertEqual(DRACCodec.decodeCall(call(proc: 0, args: [])), .null(xid: 0x1234, version: 1))
        XCTAssertEqual(DRACCodec.decodeCall(call(vers: 2, proc: 0, args: [])), .null(xid: 0x1234, version: 2))
        XCTAssertEqual(acceptStat(DRACCodec.decodeCall(call(proc: 0, args: [0, 0, 0, 0]))), RPC.AcceptStat.garbageArgs.rawValue)
    }

    func testProgramVersionProcedureErrors() {
        XCTAssertEqual(acceptStat(DRACCodec.decodeCall(call(prog: 100000))), RPC.AcceptStat.progUnavail.rawValue)
        XCTAssertEqual(acceptStat(DRACCodec.decodeCall(call(proc: 2))), RPC.AcceptStat.procUnavail.rawValue)
        let mismatch = DRACCodec.decodeCall(call(vers: 3))
        XCTAssertEqual(acceptStat(mismatch), RPC.AcceptStat.progMismatch.rawValue)
        guard case .errorReply(_, let reply, _) = mismatch else { return XCTFail() }
        XCTAssertEqual(Array(reply.suffix(8)), [0, 0, 0, 1, 0, 0, 0, 2])   // low 1, high 2
        XCTAssertEqual(acceptStat(DRACCodec.decodeCall(call(vers: 0))), RPC.AcceptStat.progMismatch.rawValue)
    }

    func testRPCVersionMismatch() {
        let d = DRACCodec.decodeCall(call(rpcvers: 3))
        XCTAssertEqual(deniedStat(d)?.0, 0)   // RPC_MISMATCH
        guard case .errorReply(let xid, let reply, _) = d else { return XCTFail() }
        XCTAssertEqual(xid, 0x1234)
        XCTAssertEqual(Array(reply.suffix(8)), [0, 0, 0, 2, 0, 0, 0, 2])
    }

    func testCredentials() {
        // Over 400 bytes: AUTH_ERROR / AUTH_BADCRED (RFC 5531 section 8.2 opaque<400>).
        let big = DRACCodec.decodeCall(call(cred: [UInt8](repeating: 1, count: 404)))
        XCTAssertEqual(deniedStat(big)?.0, 1)
        XCTAssertEqual(deniedStat(big)?.1, RPC.AuthStat.badCred.rawValue)
        // A length that points past the message: dropped (DRAC 1.12 stored 0.0.0.0 from these).
        if case .drop = DRACCodec.decodeCall(call(cred: [1, 2, 3, 4], credLength: 200)) {} else { XCTFail("not dropped") }
        // An absurd length is over the limit before it is past the end: AUTH_BADCRED.
        XCTAssertEqual(deniedStat(DRACCodec.decodeCall(call(credLength: 0xffff_fff0)))?.1, RPC.AuthStat.badCred.rawValue)
        // AUTH_SYS, well formed.
        var sys = XDRWriter()
        sys.uint32(1); sys.string("pop.example.org"); sys.uint32(0); sys.uint32(0); sys.uint32(1); sys.uint32(0)
        XCTAssertEqual(DRACCodec.decodeCall(call(credFlavor: 1, cred: sys.bytes)), .add(xid: 0x1234, version: 1, address: IPAddress("192.168.0.100")!))
        // AUTH_SYS with 17 groups: bad credential.
        var bad = XDRWriter()
        bad.uint32(1); bad.string("h"); bad.uint32(0); bad.uint32(0); bad.uint32(17)
        for _ in 0..<17 { bad.uint32(0) }
        XCTAssertEqual(deniedStat(DRACCodec.decodeCall(call(credFlavor: 1, cred: bad.bytes)))?.1, RPC.AuthStat.badCred.rawValue)
        // An unknown flavor (RPCSEC_GSS = 6): rejected.
        XCTAssertEqual(deniedStat(DRACCodec.decodeCall(call(credFlavor: 6)))?.1, RPC.AuthStat.rejectedCred.rawValue)
    }

    func testUndecodableMessagesAreDropped() {
        for bytes in [[], [1, 2, 3], [0, 0, 0, 1, 0, 0, 0], call(type: 1), Array(call().prefix(20)), Array(call().prefix(27))] {
            if case .drop = DRACCodec.decodeCall(bytes) { continue }
            XCTFail("not dropped: \(bytes.count) bytes -> \(DRACCodec.decodeCall(bytes))")
        }
    }

    func testTruncationNeverBorrowsBytes() {
        // Every prefix of a valid call is either dropped or answered with an error, never an add.
        let full = call()
        for n in 0..<full.count {
            if case .add = DRACCodec.decodeCall(Array(full.prefix(n))) { XCTFail("prefix \(n) decoded as an add") }
        }
    }

    func testRepliesRoundTrip() {
        let ok = DRACCodec.addReply(xid: 77, .permissionDenied)
        guard case .success(let (xid, results)) = DRACCodec.decodeReply(ok) else { return XCTFail() }
        XCTAssertEqual(xid, 77)
        XCTAssertEqual(results, [0, 0, 0, 1])
        XCTAssertEqual(DRACCodec.decodeReply(DRACCodec.accepted(xid: 5, .garbageArgs)).map { $0.xid }, .failure(.notAccepted(.garbageArgs)))
        if case .failure(.denied) = DRACCodec.decodeReply(DRACCodec.rpcMismatch(xid: 5)) {} else { XCTFail() }
        let encoded = DRACCodec.encodeCall(xid: 9, program: 900101, version: 1, procedure: 1, arguments: [1, 2, 3, 4])
        XCTAssertEqual(DRACCodec.decodeCall(encoded), .add(xid: 9, version: 1, address: IPAddress("1.2.3.4")!))
    }
}

final class RecordDecoderTests: XCTestCase {
    func decode(_ chunks: [[UInt8]], max: Int = 8192) throws -> [[UInt8]] {
        var decoder = RPCRecordDecoder(maxRecord: max)
        var buffer = ByteBuffer()
        var out: [[UInt8]] = []
        for c in chunks {
            buffer.writeBytes(c)
            while let r = try decoder.decode(buffer: &buffer) { out.append(r) }
        }
        return out
    }

    func testFragmentsAndPartialReads() throws {
        let frag1: [UInt8] = [0, 0, 0, 3, 1, 2, 3]
        let frag2: [UInt8] = [0x80, 0, 0, 2, 4, 5]
        XCTAssertEqual(try decode([frag1 + frag2]), [[1, 2, 3, 4, 5]])
        // Byte by byte.
        XCTAssertEqual(try decode((frag1 + frag2 + RPCRecordDecoder.frame([9])).map { [$0] }), [[1, 2, 3, 4, 5], [9]])
        XCTAssertEqual(try decode([[0x80, 0, 0]]), [])
    }

    func testHugeAnnouncedRecordFailsAtOnce() {
        // A client announcing 2 GiB is refused from the 4-byte header alone (DRAC froze 35 s).
        XCTAssertThrowsError(try decode([[0xff, 0xff, 0xff, 0xff]])) { e in
            XCTAssertEqual(e as? RPCRecordDecoder.DecodeError, .recordTooLong(announced: 0x7fff_ffff, limit: 8192))
        }
        // Many small fragments adding up past the limit fail too.
        let frag: [UInt8] = [0, 0, 0x10, 0] + [UInt8](repeating: 0, count: 4096)
        XCTAssertThrowsError(try decode([frag, frag, frag]))
    }

    func testEmptyNonFinalFragmentIsRefused() {
        XCTAssertThrowsError(try decode([[0, 0, 0, 0]])) { e in
            XCTAssertEqual(e as? RPCRecordDecoder.DecodeError, .emptyFragment)
        }
        XCTAssertEqual(try decode([[0x80, 0, 0, 0]]), [[]])
    }

    func testServerNames() {
        XCTAssertEqual(DRACServerName("localhost"), DRACServerName(host: "localhost", port: nil))
        XCTAssertEqual(DRACServerName("127.0.0.1:9001")?.port, 9001)
        XCTAssertEqual(DRACServerName("[::1]:9001")?.host, "::1")
        XCTAssertEqual(DRACServerName("::1")?.host, "::1")
        XCTAssertNil(DRACServerName("host:0"))
        XCTAssertNil(DRACServerName("host:99999"))
        XCTAssertNil(DRACServerName("[::1"))
        XCTAssertNil(DRACServerName(""))
    }
}
