// ONC RPC v2 (RFC 5531) call decoding and reply encoding, and the DRAC program (rpc/drac.x) on top.
import DRACCore

/// Constants of RFC 5531 section 9 and of the DRAC program.
public enum RPC {
    public static let version: UInt32 = 2
    public enum MessageType: UInt32 { case call = 0, reply = 1 }
    public enum AcceptStat: UInt32 {
        case success = 0, progUnavail = 1, progMismatch = 2, procUnavail = 3, garbageArgs = 4, systemErr = 5
    }
    public enum AuthStat: UInt32 {
        case ok = 0, badCred = 1, rejectedCred = 2, badVerf = 3, rejectedVerf = 4, tooWeak = 5
    }
    public enum AuthFlavor: UInt32 { case none = 0, sys = 1, short = 2 }
    /// RFC 5531 section 8.2: `opaque body<400>`.
    public static let maxAuthBody = 400
}

/// The DRAC program as defined in rpc/drac.x (DRAC 1.12).
public enum DRACProgram {
    public static let number: UInt32 = 900101
    /// v1 adds IPv4 addresses, v2 adds IPv6 addresses.
    public static let versions: ClosedRange<UInt32> = 1...2
    public static let procNull: UInt32 = 0
    public static let procAdd: UInt32 = 1
}

/// `enum addstat` of drac.x (the `ADD_UNKOWN` spelling is the original's).
public enum AddStatus: Int32, Sendable, CustomStringConvertible {
    case success = 0, permissionDenied = 1, systemError = 2, unknown = 3
    public var description: String {
        switch self {
        case .success: return "ADD_SUCCESS"
        case .permissionDenied: return "ADD_PERM"
        case .systemError: return "ADD_SYSERR"
        case .unknown: return "ADD_UNKOWN"
        }
    }
}

/// A decoded DRAC call, or what to do with input that is not one.
public enum DRACCallDecoding: Equatable {
    case null(xid: UInt32, version: UInt32)
    case add(xid: UInt32, version: UInt32, address: IPAddress)
    /// Reply with this RPC error; `reason` is for the log.
    case errorReply(xid: UInt32, reply: [UInt8], reason: String)
    /// Not answerable (no xid, or not a call): drop it and log `reason`.
    case drop(reason: String)
}

/// Decodes DRAC calls and encodes replies. Pure: bytes in, decision out.
public enum DRACCodec {
    /// Decodes one datagram or TCP record. Every length is checked against the bytes received:
    /// a short or padded datagram never borrows bytes from anywhere (DRAC 1.12 stored junk keys
    /// that way), and arguments must be exactly the size the procedure takes.
    public static func decodeCall(_ bytes: [UInt8]) -> DRACCallDecoding {
        var r = XDRReader(bytes)
        guard let xid = try? r.uint32() else { return .drop(reason: "message shorter than an RPC header (\(bytes.count) bytes)") }
        guard let type = try? r.uint32() else { return .drop(reason: "message shorter than an RPC header (\(bytes.count) bytes)") }
        guard type == RPC.MessageType.call.rawValue else { return .drop(reason: "not an RPC call (message type \(type))") }
        guard let rpcvers = try? r.uint32() else { return .drop(reason: "truncated RPC header") }
        guard rpcvers == RPC.version else {
            return .errorReply(xid: xid, reply: rpcMismatch(xid: xid), reason: "RPC version \(rpcvers), only 2 is supported")
        }
        guard let prog = try? r.uint32(), let vers = try? r.uint32(), let proc = try? r.uint32() else {
            return .drop(reason: "truncated RPC header")
        }
        // Credential and verifier: opaque<400> each (RFC 5531 section 8.2).
        let cred: (flavor: UInt32, body: [UInt8])
        do {
            let flavor = try r.uint32()
            cred = (flavor, try r.opaque(max: RPC.maxAuthBody))
        } catch {
            return authFailure(xid: xid, error, what: "credential")
        }
        do {
            _ = try r.uint32()
            _ = try r.opaque(max: RPC.maxAuthBody)
        } catch {
            return authFailure(xid: xid, error, what: "verifier")
        }
        switch cred.flavor {
        case RPC.AuthFlavor.none.rawValue, RPC.AuthFlavor.short.rawValue: break
        case RPC.AuthFlavor.sys.rawValue:
            guard validAuthSys(cred.body) else {
                return .errorReply(xid: xid, reply: authError(xid: xid, .badCred), reason: "malformed AUTH_SYS credential")
            }
        default:
            return .errorReply(xid: xid, reply: authError(xid: xid, .rejectedCred), reason: "unsupported credential flavor \(cred.flavor)")
        }

        guard prog == DRACProgram.number else {
            return .errorReply(xid: xid, reply: accepted(xid: xid, .progUnavail), reason: "program \(prog) is not served here")
        }
        guard DRACProgram.versions.contains(vers) else {
            return .errorReply(xid: xid, reply: progMismatch(xid: xid), reason: "program version \(vers), versions 1-2 are served")
        }
        let args = Array(bytes[r.offset...])
        switch proc {
        case DRACProgram.procNull:
            guard args.isEmpty else {
                return .errorReply(xid: xid, reply: accepted(xid: xid, .garbageArgs), reason: "NULL call with \(args.count) bytes of arguments")
            }
            return .null(xid: xid, version: vers)
        case DRACProgram.procAdd:
            switch decodeAddArguments(args, version: vers) {
            case .success(let address): return .add(xid: xid, version: vers, address: address)
            case .failure(let reason):
                return .errorReply(xid: xid, reply: accepted(xid: xid, .garbageArgs), reason: reason.message)
            }
        default:
            return .errorReply(xid: xid, reply: accepted(xid: xid, .procUnavail), reason: "procedure \(proc) does not exist")
        }
    }

    public struct ArgumentError: Error, Equatable { public var message: String }

    /// v1: one XDR unsigned int holding the IPv4 address. v2: `char ip_addr6[16]`, which rpcgen
    /// encodes with xdr_char as 16 ints; the stock client sign-extends each byte (`0xb8` arrives
    /// as `ff ff ff b8`), so an int is valid if it is 0...255 or a sign-extended negative char.
    public static func decodeAddArguments(_ args: [UInt8], version: UInt32) -> Result<IPAddress, ArgumentError> {
        let need = version == 1 ? 4 : 64
        guard args.count == need else {
            let what = args.count < need ? "too short" : "too long"
            return .failure(ArgumentError(message: "v\(version) ADD arguments \(what) (\(args.count) bytes, need \(need))"))
        }
        var r = XDRReader(args)
        if version == 1 {
            return .success(.v4(try! r.uint32()))
        }
        var out = [UInt8]()
        out.reserveCapacity(16)
        for i in 0..<16 {
            let v = try! r.uint32()
            if v <= 0xff {
                out.append(UInt8(v))
            } else if v >= 0xffff_ff80 {
                out.append(UInt8(v & 0xff))
            } else {
                return .failure(ArgumentError(message: "v2 ADD byte \(i) out of range (0x\(String(v, radix: 16)))"))
            }
        }
        return .success(.v6(out))
    }

    /// Encodes the ADD arguments as the original client does (v1 for IPv4, v2 with
    /// sign-extended chars for IPv6).
    public static func encodeAddArguments(_ address: IPAddress) -> (version: UInt32, bytes: [UInt8]) {
        var w = XDRWriter()
        switch address {
        case .v4(let a):
            w.uint32(a)
            return (1, w.bytes)
        case .v6(let b):
            for byte in b { w.int32(Int32(Int8(bitPattern: byte))) }
            return (2, w.bytes)
        }
    }

    static func validAuthSys(_ body: [UInt8]) -> Bool {
        var r = XDRReader(body)
        do {
            _ = try r.uint32()                 // stamp
            _ = try r.opaque(max: 255)         // machinename<255>
            _ = try r.uint32(); _ = try r.uint32()   // uid, gid
            let n = try r.uint32()             // gids<16>
            guard n <= 16 else { return false }
            try r.skip(Int(n) * 4)
            return r.remaining == 0
        } catch { return false }
    }

    static func authFailure(xid: UInt32, _ error: Error, what: String) -> DRACCallDecoding {
        if let f = error as? XDRReader.Failure, case .tooLong(let n, _) = f {
            return .errorReply(xid: xid, reply: authError(xid: xid, .badCred), reason: "\(what) of \(n) bytes (limit 400)")
        }
        return .drop(reason: "\(what) runs past the end of the message")
    }

    // MARK: replies (RFC 5531 section 9)

    static func replyHeader(xid: UInt32) -> XDRWriter {
        var w = XDRWriter()
        w.uint32(xid)
        w.uint32(RPC.MessageType.reply.rawValue)
        return w
    }

    public static func accepted(xid: UInt32, _ stat: RPC.AcceptStat) -> [UInt8] {
        var w = replyHeader(xid: xid)
        w.uint32(0)            // MSG_ACCEPTED
        w.uint32(0); w.uint32(0)   // verifier AUTH_NONE, empty
        w.uint32(stat.rawValue)
        return w.bytes
    }

    public static func progMismatch(xid: UInt32) -> [UInt8] {
        var bytes = accepted(xid: xid, .progMismatch)
        var w = XDRWriter()
        w.uint32(DRACProgram.versions.lowerBound)
        w.uint32(DRACProgram.versions.upperBound)
        bytes += w.bytes
        return bytes
    }

    public static func rpcMismatch(xid: UInt32) -> [UInt8] {
        var w = replyHeader(xid: xid)
        w.uint32(1)   // MSG_DENIED
        w.uint32(0)   // RPC_MISMATCH
        w.uint32(RPC.version); w.uint32(RPC.version)
        return w.bytes
    }

    public static func authError(xid: UInt32, _ stat: RPC.AuthStat) -> [UInt8] {
        var w = replyHeader(xid: xid)
        w.uint32(1)   // MSG_DENIED
        w.uint32(1)   // AUTH_ERROR
        w.uint32(stat.rawValue)
        return w.bytes
    }

    public static func nullReply(xid: UInt32) -> [UInt8] { accepted(xid: xid, .success) }

    public static func addReply(xid: UInt32, _ status: AddStatus) -> [UInt8] {
        var bytes = accepted(xid: xid, .success)
        var w = XDRWriter()
        w.int32(status.rawValue)
        bytes += w.bytes
        return bytes
    }

    // MARK: client side

    /// An RPC call with AUTH_NONE credentials.
    public static func encodeCall(xid: UInt32, program: UInt32, version: UInt32, procedure: UInt32, arguments: [UInt8]) -> [UInt8] {
        var w = XDRWriter()
        w.uint32(xid)
        w.uint32(RPC.MessageType.call.rawValue)
        w.uint32(RPC.version)
        w.uint32(program); w.uint32(version); w.uint32(procedure)
        w.uint32(0); w.uint32(0)   // cred AUTH_NONE
        w.uint32(0); w.uint32(0)   // verf AUTH_NONE
        return w.bytes + arguments
    }

    public enum ReplyError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case denied(String)
        case notAccepted(RPC.AcceptStat)
        public var description: String {
            switch self {
            case .malformed(let m): return "malformed reply: \(m)"
            case .denied(let m): return "call denied: \(m)"
            case .notAccepted(let s):
                switch s {
                case .progUnavail: return "program unavailable"
                case .progMismatch: return "program version mismatch"
                case .procUnavail: return "procedure unavailable"
                case .garbageArgs: return "server could not decode arguments"
                case .systemErr: return "server system error"
                case .success: return "success"
                }
            }
        }
    }

    /// Decodes a reply; returns its xid and result bytes when it was accepted with SUCCESS.
    public static func decodeReply(_ bytes: [UInt8]) -> Result<(xid: UInt32, results: [UInt8]), ReplyError> {
        var r = XDRReader(bytes)
        do {
            let xid = try r.uint32()
            guard try r.uint32() == RPC.MessageType.reply.rawValue else { return .failure(.malformed("not a reply")) }
            let stat = try r.uint32()
            if stat == 1 {
                let rej = try r.uint32()
                return .failure(.denied(rej == 0 ? "RPC version mismatch" : "authentication error \(try r.uint32())"))
            }
            guard stat == 0 else { return .failure(.malformed("reply status \(stat)")) }
            _ = try r.uint32(); _ = try r.opaque(max: RPC.maxAuthBody)
            let accept = try r.uint32()
            guard let a = RPC.AcceptStat(rawValue: accept) else { return .failure(.malformed("accept status \(accept)")) }
            guard a == .success else { return .failure(.notAccepted(a)) }
            return .success((xid, Array(bytes[r.offset...])))
        } catch {
            return .failure(.malformed("truncated"))
        }
    }
}
