// drac.conf `pop3d_mail_location`: the template, its validation, and safe per-user resolution.

/// Where one user's maildrop is: a Maildir directory or an mbox file, as an absolute path.
public enum MailLocation: Sendable, Equatable {
    case maildir(String)
    case mbox(String)
}

/// drac.conf `pop3d_mail_location`: `maildir:PATH` or `mbox:PATH`, PATH with the variables
/// `%u` (whole user name), `%n` (local part: before the last `@`, or all of it), `%d` (domain:
/// after the last `@`, empty if none), `%h` (home directory) and `%%` (a percent sign). A PATH
/// starting with `~/` (or just `~`) means `%h/`. The syntax is Dovecot's `mail_location` subset;
/// Dovecot's `:KEY=VALUE` options are refused rather than taken for part of the path.
///
/// Examples: `maildir:~/Maildir`, `mbox:/var/mail/%u`, `maildir:/var/vmail/%d/%n/Maildir`.
public struct MailLocationTemplate: Sendable, Equatable {
    enum Kind: Sendable, Equatable { case maildir, mbox }

    enum Piece: Sendable, Equatable {
        case literal(String)
        case user, local, domain, home
    }

    /// The template as written.
    public let text: String
    let kind: Kind
    let pieces: [Piece]

    /// `%h` or `~` is used: the server must look up the user's home directory (getpwnam_r) and
    /// pass it to `resolve`.
    public var usesHome: Bool { pieces.contains(.home) }

    /// Parses and validates a template: unknown `%x`, a missing `maildir:`/`mbox:` prefix, a
    /// relative path, `.`/`..` components, control characters or Dovecot `:` options are
    /// `badTemplate`.
    public init(_ text: String) throws(MaildropError) {
        self.text = text
        let path: Substring
        if text.hasPrefix("maildir:") {
            kind = .maildir
            path = text.dropFirst("maildir:".count)
        } else if text.hasPrefix("mbox:") {
            kind = .mbox
            path = text.dropFirst("mbox:".count)
        } else {
            throw .badTemplate("\"\(text)\" does not start with \"maildir:\" or \"mbox:\"")
        }
        if path.isEmpty { throw .badTemplate("\"\(text)\" has no path") }
        if path.unicodeScalars.contains(where: { Self.isControl($0) }) {
            throw .badTemplate("\"\(Self.printable(text))\" contains a control character")
        }
        if path.contains(":") {
            throw .badTemplate("\"\(text)\": Dovecot-style \":OPTION=VALUE\" settings are not supported (a path may not contain \":\")")
        }

        var pieces: [Piece] = []
        var literal = ""
        func flush() {
            if !literal.isEmpty { pieces.append(.literal(literal)); literal = "" }
        }
        var rest = path[...]
        if rest == "~" || rest.hasPrefix("~/") {
            pieces.append(.home)
            rest = rest.dropFirst()
        } else if rest.hasPrefix("~") {
            throw .badTemplate("\"\(text)\": only \"~/\" (the user's own home) is supported, not \"~user\"")
        }
        var it = rest.makeIterator()
        while let c = it.next() {
            guard c == "%" else { literal.append(c); continue }
            guard let v = it.next() else { throw .badTemplate("\"\(text)\" ends with a lone \"%\"") }
            switch v {
            case "%": literal.append("%")
            case "u": flush(); pieces.append(.user)
            case "n": flush(); pieces.append(.local)
            case "d": flush(); pieces.append(.domain)
            case "h": flush(); pieces.append(.home)
            default: throw .badTemplate("\"\(text)\": unknown variable \"%\(v)\" (known: %u %n %d %h %%)")
            }
        }
        flush()

        // Absolute: starts with "/" or with the home directory (checked absolute at resolve).
        switch pieces.first {
        case .home?: break
        case .literal(let s)? where s.hasPrefix("/"): break
        default: throw .badTemplate("\"\(text)\" is not an absolute path (start it with \"/\", \"~/\" or \"%h\")")
        }
        // The template's own components may not be "." or ".." (resolution relies on that: any
        // such component in a result would have to come from the user name).
        var skeleton = ""
        for p in pieces {
            if case .literal(let s) = p { skeleton += s } else { skeleton += "\u{1}" }
        }
        for comp in skeleton.split(separator: "/", omittingEmptySubsequences: true) where comp == "." || comp == ".." {
            throw .badTemplate("\"\(text)\" contains a \"\(comp)\" path component")
        }
        if kind == .mbox && skeleton.hasSuffix("/") {
            throw .badTemplate("\"\(text)\": an mbox path names a file, it cannot end with \"/\"")
        }
        self.pieces = pieces
    }

    /// The maildrop of one user.
    ///
    /// Security: the user name comes from the network (USER/APOP/AUTH). Every part that is
    /// substituted must stay one path component below the template's directory, so a part is
    /// refused (`invalidUser`) when it is empty, longer than 255 octets (NAME_MAX), contains "/",
    /// NUL or another control character (C0, DEL, C1), or starts with "." (which covers "." and
    /// ".." and hidden names such as ".ssh"). Parts never contain "/", and neither the template's
    /// literal components nor the parts can be "." or "..", so no result leaves the directory.
    /// The domain is lower-cased (in `%d` and in `%u`): `Bob@Example.ORG` and `Bob@example.org`
    /// share a maildrop; the local part is kept as is (RFC 5321 §2.4: it may be case-sensitive).
    ///
    /// - Parameter home: the user's home directory (from the passwd entry); required when
    ///   `usesHome`. It must be absolute and may not contain "." or ".." components.
    public func resolve(user: String, home: String?) throws(MaildropError) -> MailLocation {
        let local: String
        let domain: String
        if let at = user.lastIndex(of: "@") {
            local = String(user[..<at])
            domain = String(user[user.index(after: at)...]).lowercased()
        } else {
            local = user
            domain = ""
        }
        let whole = user.contains("@") ? local + "@" + domain : user

        var out = ""
        for p in pieces {
            switch p {
            case .literal(let s):
                out += s
            case .user:
                try Self.checkPart(whole, "user name", user: user)
                out += whole
            case .local:
                try Self.checkPart(local, "local part", user: user)
                out += local
            case .domain:
                try Self.checkPart(domain, "domain", user: user)
                out += domain
            case .home:
                out += try Self.checkedHome(home, user: user)
            }
        }
        // PATH_MAX includes the terminating NUL.
        if out.utf8.count >= 4096 { throw .invalidUser("\"\(Self.printable(user))\": resulting path is too long") }
        while out.count > 1 && out.hasSuffix("/") { out.removeLast() }
        return kind == .maildir ? .maildir(out) : .mbox(out)
    }

    // MARK: - Checks

    static func isControl(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (0x7F...0x9F).contains(s.value)
    }

    /// A name safe to put in a log line: control characters as "?", at most 64 characters.
    static func printable(_ s: String) -> String {
        let cleaned = String(String.UnicodeScalarView(s.unicodeScalars.map { isControl($0) ? "?" : $0 }))
        return cleaned.count > 64 ? String(cleaned.prefix(64)) + "..." : cleaned
    }

    static func checkPart(_ value: String, _ what: String, user: String) throws(MaildropError) {
        let name = "\"\(printable(user))\""
        if value.isEmpty { throw .invalidUser("\(name): empty \(what)") }
        if value.utf8.count > 255 { throw .invalidUser("\(name): \(what) longer than 255 octets") }
        if value.hasPrefix(".") { throw .invalidUser("\(name): \(what) starts with \".\"") }
        for s in value.unicodeScalars {
            if s == "/" { throw .invalidUser("\(name): \(what) contains \"/\"") }
            if isControl(s) { throw .invalidUser("\(name): \(what) contains a control character") }
        }
    }

    /// The home directory without trailing "/" ("" for "/", so that "%h/Maildir" is "/Maildir").
    static func checkedHome(_ home: String?, user: String) throws(MaildropError) -> String {
        let name = "\"\(printable(user))\""
        guard let home, !home.isEmpty else { throw .invalidUser("\(name): no home directory") }
        guard home.hasPrefix("/") else { throw .invalidUser("\(name): home directory \"\(printable(home))\" is not absolute") }
        if home.unicodeScalars.contains(where: { isControl($0) }) {
            throw .invalidUser("\(name): home directory contains a control character")
        }
        for comp in home.split(separator: "/") where comp == "." || comp == ".." {
            throw .invalidUser("\(name): home directory \"\(printable(home))\" contains \"\(comp)\"")
        }
        var h = home
        while h.hasSuffix("/") { h.removeLast() }
        return h
    }
}
