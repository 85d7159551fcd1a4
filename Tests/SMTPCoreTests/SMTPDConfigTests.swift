// drac-smtpd's smtpd_* settings in drac.conf: listeners, values, errors with file and line.
import XCTest
@testable import SMTPCore
import DRACCore

final class SMTPDConfigTests: XCTestCase {
    // MARK: - Listeners

    func testListenerSpecs() {
        let good: [(String, ListenerSpec, String)] = [
            ("smtp:*:25", ListenerSpec(kind: .smtp, address: nil, port: 25), "smtp:*:25"),
            ("submission:[::1]:587", ListenerSpec(kind: .submission, address: IPAddress("::1"), port: 587), "submission:[::1]:587"),
            ("submissions:127.0.0.1:465", ListenerSpec(kind: .submissions, address: IPAddress("127.0.0.1"), port: 465), "submissions:127.0.0.1:465"),
            ("SMTP:*:2525", ListenerSpec(kind: .smtp, address: nil, port: 2525), "smtp:*:2525"),
            ("smtp:[2001:db8::1]:25", ListenerSpec(kind: .smtp, address: IPAddress("2001:db8::1"), port: 25), "smtp:[2001:db8::1]:25"),
            ("smtp:0.0.0.0:65535", ListenerSpec(kind: .smtp, address: IPAddress("0.0.0.0"), port: 65535), "smtp:0.0.0.0:65535"),
        ]
        for (text, spec, description) in good {
            XCTAssertEqual(ListenerSpec(text), spec, text)
            XCTAssertEqual(ListenerSpec(text)?.description, description, text)
            XCTAssertEqual(ListenerSpec(description), spec, "description parses back: \(description)")
        }
        let bad = [
            "pop3:*:110", "lmtp:*:24", "smtps:*:465", ":*:25", "smtp", "smtp:*", "smtp:25",
            "smtp:*:", "smtp:*:x", "smtp:*:65536", "smtp:*:-1", "smtp:*:99999999999999999999",
            "smtp:localhost:25", "smtp:[::1:25", "smtp:256.1.1.1:25", "smtp:01.2.3.4:25", "smtp::25",
            "smtp:[fe80::1%eth0]:25", "",
        ]
        for text in bad { XCTAssertNil(ListenerSpec(text), text) }
    }

    // MARK: - SMTPDConfig from drac.conf

    func testDefaults() throws {
        let c = try SMTPDConfig(ConfigSource())
        XCTAssertEqual(c, SMTPDConfig())
        XCTAssertEqual(c.listeners.map(\.description), ["smtp:*:25", "submission:*:587"])
        XCTAssertEqual(c.backendHost, "127.0.0.1")
        XCTAssertEqual(c.backendPort, 10025)
        XCTAssertTrue(c.useDrac)
        XCTAssertTrue(c.authRequiresTLS)
        XCTAssertEqual(c.limits, SMTPLimits())
        XCTAssertEqual(c.limits.commandLine, 512)
        XCTAssertEqual(c.limits.authLine, 12_288)
        XCTAssertEqual(c.limits.textLine, 1000)
    }

    func testFullFile() throws {
        var s = ConfigSource()
        try s.parseFile("""
        # drac-smtpd
        smtpd_listen = smtp:127.0.0.1:2525, submission:[::1]:5587 submissions:*:4465
        smtpd_hostname = mx.Example.org
        smtpd_backend = [::1]:10026
        smtpd_backend_timeout = 2m
        smtpd_backend_data_timeout = 600
        smtpd_local_domains = Example.ORG, mail.example.org
        smtpd_relay_domains = backup.EXAMPLE.net
        smtpd_trusted_networks = 10.0.0.0/8, 192.0.2.1 2001:db8::/32
        smtpd_use_drac = no
        smtpd_tls_cert_file = /etc/ssl/cert.pem
        smtpd_tls_key_file = /etc/ssl/key.pem
        smtpd_auth_requires_tls = no
        smtpd_sasl_mechanisms = plain, login
        smtpd_sasl_pwcheck_method = saslauthd
        smtpd_saslauthd_path = /run/saslauthd/mux
        smtpd_sasldb_path = /etc/sasldb2.test
        smtpd_sasl_realm = example.org
        smtpd_message_size_limit = 65536
        smtpd_recipient_limit = 100
        smtpd_error_limit = 7
        smtpd_timeout = 5m
        smtpd_data_timeout = 3m
        smtpd_max_connections = 200
        smtpd_max_connections_per_client = 5
        smtpd_auth_failure_limit = 3
        smtpd_auth_failure_max_delay = 10s
        smtpd_shutdown_grace = 1m
        expire = 30
        """, name: "t")
        let c = try SMTPDConfig(s)
        XCTAssertEqual(c.listeners, [
            ListenerSpec(kind: .smtp, address: IPAddress("127.0.0.1"), port: 2525),
            ListenerSpec(kind: .submission, address: IPAddress("::1"), port: 5587),
            ListenerSpec(kind: .submissions, address: nil, port: 4465),
        ])
        XCTAssertEqual(c.hostname, "mx.Example.org")
        XCTAssertEqual(c.backendHost, "::1")
        XCTAssertEqual(c.backendPort, 10026)
        XCTAssertEqual(c.backendTimeoutSeconds, 120)
        XCTAssertEqual(c.backendDataTimeoutSeconds, 600)
        XCTAssertEqual(c.localDomains, ["example.org", "mail.example.org"], "domains are lowercased")
        XCTAssertEqual(c.relayDomains, ["backup.example.net"])
        XCTAssertEqual(c.trustedNetworks, AllowList(rules: ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"].map { AllowRule(cidr: $0)! }))
        XCTAssertTrue(c.trustedNetworks.allows(IPAddress("10.200.0.1")!))
        XCTAssertTrue(c.trustedNetworks.allows(IPAddress("::ffff:192.0.2.1")!))
        XCTAssertFalse(c.trustedNetworks.allows(IPAddress("192.0.2.2")!))
        XCTAssertFalse(c.useDrac)
        XCTAssertEqual(c.tlsCertFile, "/etc/ssl/cert.pem")
        XCTAssertEqual(c.tlsKeyFile, "/etc/ssl/key.pem")
        XCTAssertFalse(c.authRequiresTLS)
        XCTAssertEqual(c.saslMechanisms, ["PLAIN", "LOGIN"])
        XCTAssertEqual(c.saslPwcheckMethod, "saslauthd")
        XCTAssertEqual(c.saslauthdPath, "/run/saslauthd/mux")
        XCTAssertEqual(c.sasldbPath, "/etc/sasldb2.test")
        XCTAssertEqual(c.saslRealm, "example.org")
        XCTAssertEqual(c.limits.messageSize, 65536)
        XCTAssertEqual(c.limits.recipients, 100)
        XCTAssertEqual(c.limits.errors, 7)
        XCTAssertEqual(c.limits.commandTimeoutSeconds, 300)
        XCTAssertEqual(c.limits.dataTimeoutSeconds, 180)
        XCTAssertEqual(c.maxConnections, 200)
        XCTAssertEqual(c.maxConnectionsPerClient, 5)
        XCTAssertEqual(c.authFailureLimit, 3)
        XCTAssertEqual(c.authFailureMaxDelay, 10)
        XCTAssertEqual(c.shutdownGraceSeconds, 60)

        // The policy the sessions get carries the same domains and networks.
        let p = c.policy
        XCTAssertEqual(p.localDomains, ["example.org", "mail.example.org"])
        XCTAssertEqual(p.relayDomains, ["backup.example.net"])
        XCTAssertFalse(p.dracEnabled)
        XCTAssertEqual(p.trustedNetworks, c.trustedNetworks)

        // rpc.dracd's reader ignores the smtpd_ keys but still reads its own.
        let d = try DRACConfig(s)
        XCTAssertEqual(d.expireSeconds, 30 * 60)
    }

    func testOverridesApplyToo() throws {
        var s = ConfigSource()
        try s.parseFile("smtpd_listen = smtp:127.0.0.1:2525\nsmtpd_error_limit = 5\n", name: "t")
        try s.parseOverride("smtpd_error_limit=9")
        XCTAssertEqual(try SMTPDConfig(s).limits.errors, 9)
        try s.parseOverride("smtpd_error_limit=0")
        XCTAssertThrowsError(try SMTPDConfig(s)) { e in
            XCTAssertEqual((e as? ConfigError)?.source, "-o smtpd_error_limit=0")
            XCTAssertNil((e as? ConfigError)?.line)
        }
    }

    /// Every bad value is reported with its file, its line and its key.
    func testErrorsCarryFileAndLine() {
        let cases: [(String, String)] = [
            ("smtpd_listen", "pop3:*:110"),
            ("smtpd_listen", "smtp:*:70000"),
            ("smtpd_listen", "smtp:localhost:25"),
            ("smtpd_listen", ","),
            ("smtpd_hostname", "bad_host"),
            ("smtpd_hostname", "mx example"),
            ("smtpd_backend", "localhost"),
            ("smtpd_backend", "localhost:0"),
            ("smtpd_backend", ":25"),
            ("smtpd_backend", "[]:25"),
            ("smtpd_backend_timeout", "0"),
            ("smtpd_backend_timeout", "2h"),
            ("smtpd_backend_data_timeout", "soon"),
            ("smtpd_local_domains", "example..org"),
            ("smtpd_local_domains", "example.org."),
            ("smtpd_local_domains", "[127.0.0.1]"),
            ("smtpd_local_domains", "ex ample_.org"),
            ("smtpd_relay_domains", "-bad.example"),
            ("smtpd_trusted_networks", "10.0.0.1/8"),
            ("smtpd_trusted_networks", "example.org"),
            ("smtpd_trusted_networks", "10.0.0.0/33"),
            ("smtpd_use_drac", "maybe"),
            ("smtpd_auth_requires_tls", "2"),
            ("smtpd_sasl_mechanisms", "PLAIN, DIGEST-MD5"),
            ("smtpd_sasl_mechanisms", "GSSAPI"),
            ("smtpd_sasl_pwcheck_method", "pam"),
            ("smtpd_message_size_limit", "1000"),
            ("smtpd_message_size_limit", "10M"),
            ("smtpd_recipient_limit", "99"),
            ("smtpd_error_limit", "0"),
            ("smtpd_timeout", "0"),
            ("smtpd_data_timeout", "-1"),
            ("smtpd_max_connections", "0"),
            ("smtpd_max_connections_per_client", "many"),
            ("smtpd_auth_failure_limit", "0"),
            ("smtpd_auth_failure_max_delay", "10m"),
            ("smtpd_shutdown_grace", "2h"),
        ]
        for (key, value) in cases {
            var s = ConfigSource()
            do {
                try s.parseFile("# test\n\nsmtpd_use_drac = yes\n\(key) = \(value)\n", name: "/etc/drac/test.conf")
            } catch {
                XCTFail("\(key) = \(value): the file itself should parse: \(error)")
                continue
            }
            XCTAssertThrowsError(try SMTPDConfig(s), "\(key) = \(value)") { e in
                guard let e = e as? ConfigError else { return XCTFail("\(e)") }
                XCTAssertEqual(e.source, "/etc/drac/test.conf", "\(key) = \(value)")
                XCTAssertEqual(e.line, 4, "\(key) = \(value)")
                XCTAssertTrue(e.message.hasPrefix(key + ":"), "\(key) = \(value): \(e.message)")
                XCTAssertTrue(e.description.hasPrefix("/etc/drac/test.conf, line 4: \(key):"), e.description)
            }
            // rpc.dracd's reader does not care about the smtpd_ keys, good or bad.
            XCTAssertNoThrow(try DRACConfig(s), "\(key) = \(value)")
        }
    }

    func testUnknownKeyIsAnError() {
        var s = ConfigSource()
        XCTAssertThrowsError(try s.parseFile("smtpd_lisen = smtp:*:25\n", name: "t")) { e in
            XCTAssertEqual((e as? ConfigError)?.line, 1)
        }
    }

    func testTLSFilesGoTogether() throws {
        for text in ["# c\nsmtpd_tls_cert_file = /etc/ssl/c.pem\n", "# k\nsmtpd_tls_key_file = /etc/ssl/k.pem\n"] {
            var s = ConfigSource()
            try s.parseFile(text, name: "t")
            XCTAssertThrowsError(try SMTPDConfig(s), text) { e in
                XCTAssertTrue((e as? ConfigError)?.message.contains("go together") ?? false, "\(e)")
                // The error points at the key that was set: file t, line 2.
                XCTAssertEqual((e as? ConfigError)?.source, "t")
                XCTAssertEqual((e as? ConfigError)?.line, 2)
            }
        }
        // Empty values mean "none": both empty is fine.
        var s = ConfigSource()
        try s.parseFile("smtpd_tls_cert_file =\nsmtpd_tls_key_file =\n", name: "t")
        let c = try SMTPDConfig(s)
        XCTAssertNil(c.tlsCertFile)
        XCTAssertNil(c.tlsKeyFile)
    }

    func testSubmissionsListenerNeedsTLSFiles() throws {
        var s = ConfigSource()
        try s.parseFile("smtpd_listen = smtp:*:25 submissions:*:465\n", name: "t")
        XCTAssertThrowsError(try SMTPDConfig(s)) { e in
            XCTAssertTrue((e as? ConfigError)?.message.contains("submissions") ?? false, "\(e)")
            XCTAssertEqual((e as? ConfigError)?.line, 1)
        }
        try s.parseFile("smtpd_tls_cert_file = /c.pem\nsmtpd_tls_key_file = /k.pem\n", name: "u")
        XCTAssertEqual(try SMTPDConfig(s).listeners.last, ListenerSpec(kind: .submissions, address: nil, port: 465))
        // A plain submission listener needs no certificate (STARTTLS is simply not offered).
        var p = ConfigSource()
        try p.parseFile("smtpd_listen = submission:*:587\n", name: "t")
        XCTAssertNoThrow(try SMTPDConfig(p))
    }

    func testEmptyMechanismListDisablesAUTH() throws {
        var s = ConfigSource()
        try s.parseFile("smtpd_sasl_mechanisms =\n", name: "t")
        XCTAssertEqual(try SMTPDConfig(s).saslMechanisms, [])
    }

    /// A file holding both programs' keys is accepted by both readers.
    func testDRACConfigAcceptsSMTPDKeys() throws {
        var s = ConfigSource()
        try s.parseFile("""
        map_file = /var/lib/drac/dracd.db
        expire = 45
        smtpd_listen = smtp:127.0.0.1:2525
        smtpd_local_domains = example.org
        smtpd_use_drac = yes
        """, name: "drac.conf")
        let d = try DRACConfig(s)
        XCTAssertEqual(d.mapFile, "/var/lib/drac/dracd.db")
        XCTAssertEqual(d.expireSeconds, 45 * 60)
        let c = try SMTPDConfig(s)
        XCTAssertEqual(c.listeners, [ListenerSpec(kind: .smtp, address: IPAddress("127.0.0.1"), port: 2525)])
        XCTAssertEqual(c.localDomains, ["example.org"])
    }
}

final class SMTPDConfigKeyCoverageTests: XCTestCase {
    /// Every smtpd_* key in ConfigKey appears in the full-file test above (so each is parsed and
    /// checked there) — a new key without a test fails here.
    func testEverySMTPDKeyIsExercised() throws {
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        for key in ConfigKey.allCases where key.rawValue.hasPrefix("smtpd_") {
            XCTAssertTrue(source.contains(key.rawValue + " ="), "\(key.rawValue) is not exercised in SMTPDConfigTests")
        }
    }
}
