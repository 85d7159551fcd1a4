// The Received: trace header drac-smtpd adds (RFC 5321 §4.4, RFC 3848 protocol names).
import DRACCore

public enum ReceivedHeader {
    /// `Received: from HELO ([ADDR]) by HOST (drac-smtpd) with ESMTPSA id ID; DATE`, folded.
    /// The HELO name is the client's claim: characters outside a safe set are replaced, so that
    /// it cannot break the header or inject another one.
    public static func make(helo: String?, client: IPAddress, hostname: String, protocolName: String,
                            id: String, recipient: String?, date: String) -> String {
        let name = sanitize(helo ?? "unknown")
        let literal = client.isV4 ? "[\(client)]" : "[IPv6:\(client)]"
        var h = "Received: from \(name) (\(literal))\r\n\tby \(sanitize(hostname)) (drac-smtpd) with \(protocolName) id \(id)"
        if let recipient { h += "\r\n\tfor <\(sanitize(recipient))>" }
        h += "; \(date)\r\n"
        return h
    }

    static func sanitize(_ s: String) -> String {
        let cleaned = s.unicodeScalars.prefix(255).map { c -> Character in
            let ok = c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || ".-_:[]@+=".unicodeScalars.contains(c))
            return ok ? Character(c) : "?"
        }
        return String(cleaned)
    }
}
