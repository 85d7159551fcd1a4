// TCP record marking (RFC 5531 section 11): fragments with a 4-byte header, limits enforced.
import NIOCore

/// Reassembles RPC records from a TCP stream. A record (all its fragments together) longer than
/// `maxRecord` is an error, detected from the fragment header before any of it is buffered, so
/// a client announcing a 2 GiB fragment costs us four bytes, not a stall.
public struct RPCRecordDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = [UInt8]

    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case recordTooLong(announced: Int, limit: Int)
        case emptyFragment
        public var description: String {
            switch self {
            case .recordTooLong(let n, let limit): return "record of \(n) bytes announced (limit \(limit))"
            case .emptyFragment: return "empty non-final fragment"
            }
        }
    }

    public let maxRecord: Int
    private var pending: [UInt8] = []

    public init(maxRecord: Int) { self.maxRecord = maxRecord }

    public mutating func decode(buffer: inout ByteBuffer) throws -> [UInt8]? {
        while true {
            guard let header = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
            let last = header & 0x8000_0000 != 0
            let length = Int(header & 0x7fff_ffff)
            guard pending.count + length <= maxRecord else {
                throw DecodeError.recordTooLong(announced: pending.count + length, limit: maxRecord)
            }
            // An empty non-final fragment makes no progress: a client could loop forever on it.
            guard length > 0 || last else { throw DecodeError.emptyFragment }
            guard buffer.readableBytes >= 4 + length else { return nil }
            buffer.moveReaderIndex(forwardBy: 4)
            pending += buffer.readBytes(length: length)!
            if last {
                defer { pending = [] }
                return pending
            }
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> [UInt8]? {
        try decode(buffer: &buffer)
    }

    /// Frames one reply as a single last fragment.
    public static func frame(_ record: [UInt8]) -> [UInt8] {
        let header = UInt32(record.count) | 0x8000_0000
        return [UInt8(header >> 24), UInt8((header >> 16) & 0xff), UInt8((header >> 8) & 0xff), UInt8(header & 0xff)] + record
    }
}
