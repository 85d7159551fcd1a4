// swift-tools-version:6.0
// The DRAC relay-authorization suite: rpc.dracd, dracctl and the modules they share.
import PackageDescription

let package = Package(
    name: "drac",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "rpc.dracd", targets: ["rpc.dracd"]),
        .executable(name: "dracctl", targets: ["dracctl"]),
        .executable(name: "drac-smtpd", targets: ["drac-smtpd"]),
        .executable(name: "drac-pop3d", targets: ["drac-pop3d"]),
        .library(name: "DRACCore", targets: ["DRACCore"]),
        .library(name: "DRACRPC", targets: ["DRACRPC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.0"),
    ],
    targets: [
        // C libraries fixed by the design. Only DRACMap, DRACRPC and SASLAuth import these.
        .systemLibrary(name: "CTirpc", pkgConfig: "libtirpc", providers: [.apt(["libtirpc-dev"])]),
        .systemLibrary(name: "CBerkeleyDB", providers: [.apt(["libdb-dev"])]),
        .systemLibrary(name: "CSASL", pkgConfig: "libsasl2", providers: [.apt(["libsasl2-dev"])]),
        // glibc's <sys/fsuid.h> (setfsuid/setfsgid, drac-pop3d's system-user mode) and preadv2
        // with RWF_NOWAIT (message reads served from the page cache without a thread hop).
        .systemLibrary(name: "CLinux"),

        // Pure Swift: addresses, CIDR, allow list, map encoding, expiry, configuration. No I/O, no C.
        .target(name: "DRACCore"),
        // Berkeley DB map: open, put/get/delete/scan, locks, change detection, chunked expiry.
        .target(name: "DRACMap", dependencies: ["DRACCore", "CBerkeleyDB"]),
        // XDR/RPC codec (pure), rpcbind registration (libtirpc), NIO client.
        .target(name: "DRACRPC", dependencies: [
            "DRACCore", "CTirpc",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // syslog LogHandler for swift-log.
        // drac.conf and the allow file read from disk (-c, /etc/drac/drac.conf, -o), for every program.
        .target(name: "DRACConfigFile", dependencies: ["DRACCore"]),
        .target(name: "DRACLog", dependencies: [.product(name: "Logging", package: "swift-log")]),
        // Cyrus SASL wrapper (used by drac-smtpd and drac-pop3d).
        .target(name: "SASLAuth", dependencies: ["CSASL"]),
        // The rpc.dracd service: NIO transports, group commit writer, sweeper, reload.
        .target(name: "DRACDaemon", dependencies: [
            "DRACCore", "DRACConfigFile", "DRACMap", "DRACRPC", "DRACLog", "CLinux",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // dracctl's commands, as a library so tests can drive them.
        .target(name: "DRACAdmin", dependencies: [
            "DRACCore", "DRACConfigFile", "DRACMap", "DRACRPC",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Pure SMTP: command parser, replies, limits, DATA scanner, session state machine.
        .target(name: "SMTPCore", dependencies: ["DRACCore"]),
        // Pure POP3: command parser, responses, limits, maildrop view, dot-stuffing, session state
        // machine. Uses SMTPCore's pure helpers (Base64, AuthResult, AuthThrottle), nothing with I/O.
        .target(name: "POP3Core", dependencies: ["DRACCore", "SMTPCore"]),
        // Maildir and mbox maildrops on disk: locking, unique-ids, streaming, UPDATE.
        .target(name: "MaildropStore", dependencies: [
            "POP3Core", "DRACCore", "CLinux",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The listener layer shared by drac-smtpd and drac-pop3d: bind, limits, TLS, drain.
        .target(name: "MailServerKit", dependencies: [
            "DRACCore", "DRACLog", "SASLAuth", "SMTPCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // drac-smtpd's NIO glue: connection handler, backend relay, the Service.
        .target(name: "SMTPGateway", dependencies: [
            "DRACCore", "DRACConfigFile", "DRACMap", "SMTPCore", "SASLAuth", "MailServerKit",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
        // drac-pop3d's NIO glue: connection handler, DRAC notifier, privileges, the Service.
        .target(name: "POP3Server", dependencies: [
            "DRACCore", "DRACConfigFile", "DRACRPC", "POP3Core", "SMTPCore", "SASLAuth", "MailServerKit", "MaildropStore", "CLinux",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "drac-pop3d", dependencies: [
            "POP3Server", "MailServerKit", "DRACCore", "DRACLog",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "drac-smtpd", dependencies: [
            "SMTPGateway", "MailServerKit", "DRACCore", "DRACLog",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "rpc.dracd", dependencies: [
            "DRACDaemon", "DRACCore", "DRACLog",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "dracctl", dependencies: ["DRACAdmin"]),
        .executableTarget(name: "drac-bench", dependencies: ["DRACRPC", "DRACCore", "DRACMap"], path: "Benchmarks/DracBench"),

        .testTarget(name: "DRACCoreTests", dependencies: ["DRACCore"]),
        .testTarget(name: "DRACMapTests", dependencies: ["DRACMap", "DRACCore"]),
        .testTarget(name: "DRACRPCTests", dependencies: [
            "DRACRPC", "DRACCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "SASLAuthTests", dependencies: ["SASLAuth"]),
        .testTarget(name: "SMTPCoreTests", dependencies: ["SMTPCore", "DRACCore"]),
        .testTarget(name: "POP3CoreTests", dependencies: ["POP3Core", "SMTPCore", "DRACCore"]),
        .testTarget(name: "MaildropStoreTests", dependencies: ["MaildropStore", "POP3Core"]),
        .testTarget(name: "POP3ServerTests", dependencies: [
            "POP3Server", "DRACRPC", "DRACCore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        // Starts real processes (rpcbind, rpc.dracd, Postfix tools) from threads: Swift 5 mode.
        .testTarget(name: "IntegrationTests", dependencies: [
            "DRACCore", "DRACRPC", "DRACMap",
        ], swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
