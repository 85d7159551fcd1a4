// XDR (RFC 4506) reading and writing for the few types the DRAC and rpcbind protocols use.

/// Reads XDR items from a byte array, checking every length against what was received.
public struct XDRReader {
    public enum Failure: Error, Equatable { case short(needed: Int, have: Int), tooLong(Int, max: Int) }
    let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func uint32() throws(Failure) -> UInt32 {
        guard remaining >= 4 else { throw .short(needed: 4, have: remaining) }
        let v = UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
        offset += 4
        return v
    }

    /// Variable-length opaque or string (RFC 4506 sections 4.10-4.11), at most `max` bytes.
    public mutating func opaque(max: Int) throws(Failure) -> [UInt8] {
        let n = Int(try uint32())
        guard n <= max else { throw .tooLong(n, max: max) }
        let padded = (n + 3) & ~3
        guard remaining >= padded else { throw .short(needed: padded, have: remaining) }
        let out = Array(bytes[offset..<(offset + n)])
        offset += padded
        return out
    }

    public mutating func skip(_ n: Int) throws(Failure) {
        guard remaining >= n else { throw .short(needed: n, have: remaining) }
        offset += n
    }
}

/// Appends XDR items.
public struct XDRWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func uint32(_ v: UInt32) {
        bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
    }
    public mutating func int32(_ v: Int32) { uint32(UInt32(bitPattern: v)) }
    public mutating func opaque(_ data: [UInt8]) {
        uint32(UInt32(data.count))
        bytes += data
        bytes += [UInt8](repeating: 0, count: (4 - data.count % 4) % 4)
    }
    public mutating func string(_ s: String) { opaque(Array(s.utf8)) }
}
