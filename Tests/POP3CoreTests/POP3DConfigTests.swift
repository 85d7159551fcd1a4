// drac-pop3d's pop3d_* settings in drac.conf: listeners, values, ranges, errors with file and line.
import XCTest
@testable import POP3Core
import DRACCore

final class POP3DConfigTests: XCTestCase {
    func config(_ lines: [String]) throws -> POP3DConfig {
        var s = ConfigSource()
        try s.parseFile(lines.joined(separator: "\n") + "\n", name: "test.conf")
        return try POP3DConfig(s)
    }

    func error(_ lines: [String]) -> String {
        do { _ = try config(lines); return "<no error>" } catch { return "\(error)" }
    }

    func testDefaults() throws {
        let c = try config([])
        XCTAssertEqual(c.listeners, [POP3ListenerSpec(kind: .pop3, address: nil, port: 110)])
        XCTAssertEqual(c.mailLocation, "maildir:~/Maildir")
        XCTAssertEqual(c.mailUser, "")
        XCTAssertTrue(c.plaintextRequiresTLS)
        XCTAssertTrue(c.useDrac)
        XCTAssertEqual(c.dracRefreshSeconds, 1200)
        XCTAssertEqual(c.limits.autologout, 600)
        XCTAssertEqual(c.saslMechanisms, ["PLAIN", "LOGIN", "CRAM-MD5"])
        XCTAssertFalse(c.mboxFromUnquote)
    }

    func testListenerSpecs() {
        XCTAssertEqual(POP3ListenerSpec("pop3:*:110"), POP3ListenerSpec(kind: .pop3, address: nil, port: 110))
        XCTAssertEqual(POP3ListenerSpec("POP3S:[::1]:995"), POP3ListenerSpec(kind: .pop3s, address: IPAddress("::1"), port: 995))
        XCTAssertEqual(POP3ListenerSpec("pop3s:[::1]:995")?.description, "pop3s:[::1]:995")
        XCTAssertEqual(POP3ListenerSpec("pop3:127.0.0.1:0")?.description, "pop3:127.0.0.1:0")
        for bad in ["smtp:*:25", "pop3", "pop3:*", "pop3:*:65536", "pop3:localhost:110", "pop3:[::1:110", "imap:*:143", ""] {
            XCTAssertNil(POP3ListenerSpec(bad), bad)
        }
    }

    func testValues() throws {
        let c = try config([
            "pop3d_listen = pop3:127.0.0.1:110, pop3s:*:995",
            "pop3d_tls_cert_file = /etc/ssl/c.pem", "pop3d_tls_key_file = /etc/ssl/k.pem",
            "pop3d_mail_location = mbox:/var/mail/%u", "pop3d_mail_user = vmail",
            "pop3d_timeout = 30m", "pop3d_drac_refresh = 5m", "pop3d_sasl_mechanisms = plain",
            "pop3d_failed_logins = 5", "pop3d_auth_failure_max_delay = 10s", "pop3d_max_connections_per_client = 7",
            "pop3d_plaintext_requires_tls = no", "pop3d_mbox_from_unquote = yes",
        ])
        XCTAssertEqual(c.listeners.map(\.description), ["pop3:127.0.0.1:110", "pop3s:*:995"])
        XCTAssertEqual(c.mailLocation, "mbox:/var/mail/%u")
        XCTAssertEqual(c.mailUser, "vmail")
        XCTAssertEqual(c.limits.autologout, 1800)
        XCTAssertEqual(c.dracRefreshSeconds, 300)
        XCTAssertEqual(c.saslMechanisms, ["PLAIN"])
        XCTAssertEqual(c.limits.failedLogins, 5)
        XCTAssertEqual(c.authFailureMaxDelay, 10)
        XCTAssertEqual(c.maxConnectionsPerClient, 7)
        XCTAssertFalse(c.plaintextRequiresTLS)
        XCTAssertTrue(c.mboxFromUnquote)
    }

    /// RFC 1939 §3: the autologout timer is never under 10 minutes, whatever is configured.
    func testAutologoutNeverUnderTenMinutes() throws {
        XCTAssertEqual(try config(["pop3d_timeout = 1m"]).limits.autologout, 600)
        XCTAssertEqual(try config(["pop3d_timeout = 2h"]).limits.autologout, 7200)
    }

    func testErrorsNameFileLineAndKey() {
        let cases: [([String], String)] = [
            (["pop3d_listen = smtp:*:25"], "test.conf, line 1: pop3d_listen: expected kind:address:port"),
            (["", "pop3d_mail_location = imap:/x"], "test.conf, line 2: pop3d_mail_location: expected maildir:PATH or mbox:PATH"),
            (["pop3d_mail_user = ../root"], "pop3d_mail_user: expected a user name"),
            (["pop3d_timeout = soon"], "pop3d_timeout: expected a duration"),
            (["pop3d_drac_refresh = 5s"], "pop3d_drac_refresh: expected a duration"),
            (["pop3d_sasl_mechanisms = GSSAPI"], "supported mechanisms are PLAIN, LOGIN and CRAM-MD5"),
            (["pop3d_sasl_pwcheck_method = pam"], "expected auxprop (sasldb) or saslauthd"),
            (["pop3d_failed_logins = 0"], "pop3d_failed_logins: expected a number from 1 to 100"),
            (["pop3d_tls_cert_file = /c.pem"], "pop3d_tls_cert_file and pop3d_tls_key_file go together"),
            (["pop3d_listen = pop3s:*:995"], "test.conf, line 1: a pop3s (implicit TLS) listener needs pop3d_tls_cert_file"),
            (["pop3d_hostname = bad host"], "pop3d_hostname: expected a host name"),
        ]
        for (lines, text) in cases {
            let e = error(lines)
            XCTAssertTrue(e.contains(text), "\(lines): \(e)")
        }
    }
}
