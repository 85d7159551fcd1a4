// Cyrus SASL (libsasl2): facts about the linked library. The server is in CyrusSASLServer.swift.
import CSASL

/// Facts about the linked Cyrus SASL library.
public enum CyrusSASL {
    /// The library's implementation name and version, e.g. ("Cyrus SASL", "2.1.28").
    public static var version: (implementation: String, version: String) {
        var impl: UnsafePointer<CChar>? = nil
        var ver: UnsafePointer<CChar>? = nil
        var major: Int32 = 0, minor: Int32 = 0, step: Int32 = 0, patch: Int32 = 0
        sasl_version_info(&impl, &ver, &major, &minor, &step, &patch)
        return (impl.map { String(cString: $0) } ?? "unknown", "\(major).\(minor).\(step)")
    }

    /// The text libsasl2 gives for a result code (SASL_NOUSER, SASL_BADAUTH...).
    public static func describe(_ code: Int32) -> String {
        String(cString: sasl_errstring(code, nil, nil))
    }
}
