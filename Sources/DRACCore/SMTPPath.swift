// RFC 5321 §4.1.2 paths: the argument of MAIL FROM and RCPT TO, parsed strictly. Every form
// that can make a downstream MTA route mail somewhere other than the domain we checked is
// refused here, before a relay decision is ever made (RelayPolicy.swift trusts the domain).

/// The domain of a mailbox: a name or an address literal (RFC 5321 §4.1.2 `Domain / address-literal`).
public enum MailDomain: Hashable, Sendable {
    /// Lowercased ASCII letters, digits, hyphens and dots; no trailing dot.
    case name(String)
    /// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
    case literal(IPAddress)

    /// `example.org`, `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
    public var text: String {
        switch self {
        case .name(let name): return name
        case .literal(.v4(let a)): return "[" + IPAddress.formatV4(a) + "]"
        case .literal(let a): return "[IPv6:" + a.text + "]"
        }
    }
}

/// `local-part "@" domain` (RFC 5321 §4.1.2 `Mailbox`).
public struct Mailbox: Hashable, Sendable {
    /// As decoded: surrounding quotes removed, quoted-pairs unescaped.
    public var localPart: String
    public var domain: MailDomain

    public init(localPart: String, domain: MailDomain) {
        self.localPart = localPart
        self.domain = domain
    }

    /// Canonical `local@domain` for logs and for forwarding: the local part is quoted only when
    /// it is not a `Dot-string`, as RFC 5321 §4.1.2 asks senders to do.
    public var text: String { SMTPPath.quotedIfNeeded(localPart) + "@" + domain.text }
}

/// The argument of MAIL FROM: `<>` (bounces, RFC 5321 §4.5.5) or a mailbox.
public enum ReversePath: Hashable, Sendable {
    case null
    case mailbox(Mailbox)
}

/// The argument of RCPT TO.
public enum ForwardPath: Hashable, Sendable {
    /// The bare `<Postmaster>` (any case), which RFC 5321 §4.5.1 says must be accepted without a domain.
    case postmaster
    case mailbox(Mailbox)
}

/// One `esmtp-param` (RFC 5321 §4.1.2), e.g. `SIZE=1000` or `BODY=8BITMIME`.
public struct MailParameter: Hashable, Sendable {
    /// Uppercased: keywords are case-insensitive.
    public var keyword: String
    /// nil when the parameter has no `=value`.
    public var value: String?

    public init(keyword: String, value: String?) {
        self.keyword = keyword
        self.value = value
    }
}

/// Why a path was refused. The text goes into the SMTP reply and the log line.
public enum PathError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not RFC 5321 path syntax.
    case syntax(String)
    /// Syntax that could route mail past the relay check (source route, `%`, `!`, a second `@`...).
    case routingTrick(String)
    /// Over an RFC 5321 §4.5.3.1 limit.
    case tooLong

    public var description: String {
        switch self {
        case .syntax(let why): return "syntax error: \(why)"
        case .routingTrick(let why): return "refused: \(why)"
        case .tooLong: return "path too long"
        }
    }
}

public enum SMTPPath {
    /// RFC 5321 §4.5.3.1.1.
    public static let maxLocalPartOctets = 64
    /// RFC 5321 §4.5.3.1.2.
    public static let maxDomainOctets = 255
    /// RFC 5321 §4.5.3.1.3, including the angle brackets.
    public static let maxPathOctets = 256

    /// Parses what follows `MAIL FROM:`. `<>` is the null reverse path.
    public static func parseReverse(_ argument: Substring) -> Result<(ReversePath, [MailParameter]), PathError> {
        Result { () throws(PathError) -> (ReversePath, [MailParameter]) in
            let (path, tail) = try splitPath(Array(argument.utf8))
            let reverse: ReversePath = path.isEmpty ? .null : .mailbox(try mailbox(path))
            return (reverse, try parameters(tail))
        }
    }

    /// Parses what follows `RCPT TO:`. `<>` is an error; a bare `<Postmaster>` is `.postmaster`.
    public static func parseForward(_ argument: Substring) -> Result<(ForwardPath, [MailParameter]), PathError> {
        Result { () throws(PathError) -> (ForwardPath, [MailParameter]) in
            let (path, tail) = try splitPath(Array(argument.utf8))
            let forward: ForwardPath
            if path.isEmpty {
                throw .syntax("empty forward path")
            } else if path.count == 10, String(decoding: path, as: UTF8.self).lowercased() == "postmaster" {
                forward = .postmaster
            } else {
                forward = .mailbox(try mailbox(path))
            }
            return (forward, try parameters(tail))
        }
    }

    // MARK: - Brackets and parameters

    private static let space = UInt8(ascii: " "), lt = UInt8(ascii: "<"), gt = UInt8(ascii: ">")
    private static let at = UInt8(ascii: "@"), dot = UInt8(ascii: "."), colon = UInt8(ascii: ":")
    private static let dquote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

    /// Splits `[SP] "<" path ">" [SP params]` into the bytes between the brackets and the
    /// parameter text. The one optional space is what many clients send (`MAIL FROM: <a@b>`);
    /// anything looser is refused so that the text we check is the text the client meant.
    private static func splitPath(_ bytes: [UInt8]) throws(PathError) -> (ArraySlice<UInt8>, ArraySlice<UInt8>) {
        // No SMTPUTF8 (RFC 6531) yet: a non-ASCII octet can only be an error or a homoglyph.
        if bytes.contains(where: { $0 >= 0x80 }) { throw .syntax("non-ASCII octet (SMTPUTF8 is not supported)") }
        var i = 0
        if i < bytes.count, bytes[i] == space { i += 1 }
        guard i < bytes.count else { throw .syntax("missing path") }
        guard bytes[i] == lt else {
            throw .syntax(bytes[i] == space ? "more than one space before '<'" : "path must be in angle brackets")
        }
        let open = i
        i += 1
        // Find the closing '>' outside a quoted string: `"a>b"@example.org` is one path.
        var quoted = false
        while i < bytes.count {
            let c = bytes[i]
            if quoted {
                if c == backslash { i += 2; continue }
                if c == dquote { quoted = false }
            } else if c == dquote {
                quoted = true
            } else if c == lt {
                throw .routingTrick("nested '<' in path")
            } else if c == gt {
                break
            }
            i += 1
        }
        guard i < bytes.count else { throw .syntax("missing '>'") }
        if i - open + 1 > maxPathOctets { throw .tooLong }
        let path = bytes[(open + 1)..<i]
        let tail = bytes[(i + 1)...]
        guard let first = tail.first else { return (path, tail) }
        guard first == space else {
            // `<user@other>@local`: some parsers take the last '@' and route to `other`.
            if tail.contains(at) { throw .routingTrick("text after '>'") }
            throw .syntax("parameters must be separated from '>' by one space")
        }
        let parameters = tail.dropFirst()
        if parameters.isEmpty { throw .syntax("trailing space after '>'") }
        return (path, parameters)
    }

    /// `esmtp-param *(SP esmtp-param)`, RFC 5321 §4.1.2: keyword = alnum *(alnum / "-"),
    /// value = 1*(%d33-60 / %d62-126). A repeated keyword is an error (RFC 1869 §6).
    private static func parameters(_ text: ArraySlice<UInt8>) throws(PathError) -> [MailParameter] {
        if text.isEmpty { return [] }
        var result: [MailParameter] = []
        var seen: Set<String> = []
        for item in text.split(separator: space, omittingEmptySubsequences: false) {
            if item.isEmpty { throw .syntax("empty parameter (extra space)") }
            let equals = item.firstIndex(of: UInt8(ascii: "="))
            let keyword = item[..<(equals ?? item.endIndex)]
            guard let k0 = keyword.first, isAlnum(k0),
                  keyword.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") }) else {
                throw .syntax("bad parameter keyword")
            }
            var value: String? = nil
            if let equals {
                let v = item[(equals + 1)...]
                guard !v.isEmpty, v.allSatisfy({ (33...60).contains($0) || (62...126).contains($0) }) else {
                    throw .syntax("bad parameter value")
                }
                value = String(decoding: v, as: UTF8.self)
            }
            let name = String(decoding: keyword, as: UTF8.self).uppercased()
            guard seen.insert(name).inserted else { throw .syntax("duplicate parameter \(name)") }
            result.append(MailParameter(keyword: name, value: value))
        }
        return result
    }

    // MARK: - Mailbox

    /// `Local-part "@" ( Domain / address-literal )`, the bytes between the brackets.
    private static func mailbox(_ path: ArraySlice<UInt8>) throws(PathError) -> Mailbox {
        if path.first == at {
            // RFC 5321 §4.1.1.3 and appendix C let a server ignore source routes or decline the
            // relaying they imply. A downstream MTA that honours one forwards to a host we never
            // checked, and ignoring it would change the address; so we refuse it outright.
            throw .routingTrick(path.contains(colon) ? "source route in path" : "empty local part")
        }
        let (local, end) = path.first == dquote ? try quotedLocalPart(path) : try dotLocalPart(path)
        guard end < path.endIndex else { throw .routingTrick("missing domain") }
        guard path[end] == at else { throw .syntax("text after quoted local part") }
        if end - path.startIndex > maxLocalPartOctets { throw .tooLong }
        if local.isEmpty { throw .routingTrick("empty local part") }
        return Mailbox(localPart: local, domain: try domain(path[(end + 1)...]))
    }

    /// An unquoted local part up to the first '@'. Returns it and the index of that '@' (or the end).
    /// `%` and `!` are legal `atext` but are the percent hack and UUCP bang paths: downstream
    /// MTAs (sendmail, Postfix with allow_percent_hack/swap_bangpath) route on them.
    private static func dotLocalPart(_ path: ArraySlice<UInt8>) throws(PathError) -> (String, Int) {
        var i = path.startIndex
        while i < path.endIndex, path[i] != at {
            let c = path[i]
            switch c {
            case UInt8(ascii: "%"): throw .routingTrick("percent hack in local part")
            case UInt8(ascii: "!"): throw .routingTrick("bang path in local part")
            case colon: throw .routingTrick("':' in local part")
            case backslash: throw .routingTrick("backslash outside a quoted string")
            case dquote: throw .syntax("a quoted string must be the whole local part")
            case 0...32, 127: throw .routingTrick("whitespace or control character in path")
            default:
                guard c == dot || isAtext(c) else {
                    throw .syntax("invalid character '\(Unicode.Scalar(c))' in local part")
                }
            }
            i += 1
        }
        let local = path[path.startIndex..<i]
        if local.first == dot || local.last == dot || zip(local, local.dropFirst()).contains(where: { $0 == dot && $1 == dot }) {
            throw .syntax("empty atom in local part (leading, trailing or double dot)")
        }
        return (String(decoding: local, as: UTF8.self), i)
    }

    /// A `Quoted-string` local part (RFC 5321 §4.1.2: qtextSMTP, quoted-pairSMTP), decoded.
    /// Returns it and the index just past the closing quote. Quoting hides nothing from us:
    /// `"user@other"@local` becomes `user@other` once the local MTA unquotes it and then
    /// routes to `other`, so '@', ':', '%' and '!' are refused here too, escaped or not.
    private static func quotedLocalPart(_ path: ArraySlice<UInt8>) throws(PathError) -> (String, Int) {
        var decoded: [UInt8] = []
        var i = path.startIndex + 1
        while true {
            guard i < path.endIndex else { throw .syntax("unterminated quoted string") }
            var c = path[i]
            if c == dquote { break }
            let escaped = c == backslash
            if escaped {
                i += 1
                guard i < path.endIndex else { throw .syntax("unterminated quoted string") }
                c = path[i]
            }
            let how = escaped ? "quoted-pair '\\\(Unicode.Scalar(c))'" : "'\(Unicode.Scalar(c))'"
            switch c {
            case 0..<32, 127:
                throw .routingTrick(escaped ? "quoted-pair produces a control character" : "control character in quoted local part")
            case at: throw .routingTrick("\(how) inside quoted local part")
            case colon: throw .routingTrick("\(how) inside quoted local part")
            case UInt8(ascii: "%"): throw .routingTrick("percent hack in local part")
            case UInt8(ascii: "!"): throw .routingTrick("bang path in local part")
            default: decoded.append(c)
            }
            i += 1
        }
        return (String(decoding: decoded, as: UTF8.self), i + 1)
    }

    // MARK: - Domain

    private static func domain(_ d: ArraySlice<UInt8>) throws(PathError) -> MailDomain {
        if d.isEmpty { throw .routingTrick("missing domain") }
        // `user@local@other`, `"a"@b@c`: whichever '@' a downstream parser picks, we checked the other.
        if d.contains(at) { throw .routingTrick("more than one '@' in path") }
        if d.count > maxDomainOctets { throw .tooLong }
        return d.first == UInt8(ascii: "[") ? try addressLiteral(d) : try domainName(d)
    }

    /// RFC 5321 §4.1.3: `[a.b.c.d]` or `[IPv6:...]`, parsed with inet_pton rules (no leading
    /// zeros, no zone ids). General-address-literal tags are not defined anywhere, so refused.
    private static func addressLiteral(_ d: ArraySlice<UInt8>) throws(PathError) -> MailDomain {
        guard d.count >= 3, d.last == UInt8(ascii: "]") else { throw .syntax("address literal must end with ']'") }
        let inner = d.dropFirst().dropLast()
        if inner.count > 5, String(decoding: inner.prefix(5), as: UTF8.self).lowercased() == "ipv6:" {
            guard let b = IPAddress.parseV6(inner.dropFirst(5)) else { throw .syntax("bad IPv6 address literal") }
            return .literal(.v6(b))
        }
        if inner.contains(colon) { throw .syntax("unsupported address literal (only IPv4 and IPv6: are defined)") }
        guard let a = IPAddress.parseV4(inner) else { throw .syntax("bad IPv4 address literal") }
        return .literal(.v4(a))
    }

    /// RFC 5321 `Domain = sub-domain *("." sub-domain)`, `sub-domain = Let-dig [Ldh-str]`, labels
    /// 1-63 octets (RFC 1035 §2.3.4). A trailing dot or an empty label is refused as a trick, not
    /// mere syntax: some MTAs strip it and match a local domain, others route on it.
    private static func domainName(_ d: ArraySlice<UInt8>) throws(PathError) -> MailDomain {
        for c in d {
            switch c {
            case UInt8(ascii: "%"): throw .routingTrick("percent hack in domain")
            case UInt8(ascii: "!"): throw .routingTrick("bang path in domain")
            case backslash: throw .routingTrick("backslash in domain")
            case 0...32, 127: throw .routingTrick("whitespace or control character in path")
            default:
                guard isAlnum(c) || c == dot || c == UInt8(ascii: "-") else {
                    throw .syntax("invalid character '\(Unicode.Scalar(c))' in domain")
                }
            }
        }
        if d.last == dot { throw .routingTrick("trailing dot in domain") }
        let labels = d.split(separator: dot, omittingEmptySubsequences: false)
        if labels.contains(where: \.isEmpty) { throw .routingTrick("empty label in domain") }
        for label in labels {
            if label.count > 63 { throw .syntax("domain label longer than 63 octets") }
            if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") {
                throw .syntax("domain label starts or ends with '-'")
            }
        }
        // No top-level domain is all digits (RFC 3696 §2); `user@127.0.0.1` is an unbracketed
        // address that some MTAs would deliver to.
        if labels[labels.count - 1].allSatisfy({ (48...57).contains($0) }) {
            throw .routingTrick("numeric top-level label (an address must be written [a.b.c.d])")
        }
        return .name(String(decoding: d, as: UTF8.self).lowercased())
    }

    // MARK: - Character classes and quoting

    private static func isAlnum(_ c: UInt8) -> Bool {
        (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c)
    }

    /// RFC 5322 §3.2.3 `atext`, which RFC 5321 `Atom` uses.
    private static func isAtext(_ c: UInt8) -> Bool {
        isAlnum(c) || "!#$%&'*+-/=?^_`{|}~".utf8.contains(c)
    }

    /// The local part as a `Dot-string` if it is one, else as a `Quoted-string` with '"' and '\' escaped.
    static func quotedIfNeeded(_ local: String) -> String {
        let atoms = local.utf8.split(separator: dot, omittingEmptySubsequences: false)
        if !local.isEmpty, atoms.allSatisfy({ !$0.isEmpty && $0.allSatisfy(isAtext) }) { return local }
        var out = "\""
        for ch in local {
            if ch == "\"" || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out + "\""
    }
}
