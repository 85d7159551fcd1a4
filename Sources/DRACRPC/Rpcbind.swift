// Registration with the system's rpcbind through libtirpc (rpcb_set / rpcb_unset).
import CTirpc
import DRACCore
import Glibc

/// Registers and unregisters the DRAC program with the local rpcbind, over its local socket as
/// libtirpc does (so rpcbind records us as the owner and `rpcinfo` shows us).
public enum RpcbindRegistration {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Registers `version` for one transport. `netid` is udp, tcp, udp6 or tcp6; `address` is
    /// the bound address (the wildcard is fine: rpcbind answers with the address asked on).
    public static func register(version: UInt32, netid: String, address: IPAddress, port: Int) throws(Failure) {
        guard let nconf = getnetconfigent(netid) else { throw Failure(description: "unknown netid \(netid)") }
        defer { freenetconfigent(nconf) }
        var ok: bool_t = 0
        switch address {
        case .v4(let a):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(UInt16(port).bigEndian)
            sin.sin_addr.s_addr = a.bigEndian
            ok = withUnsafeMutableBytes(of: &sin) { raw in
                var nb = netbuf(maxlen: UInt32(raw.count), len: UInt32(raw.count), buf: raw.baseAddress)
                return rpcb_set(rpcprog_t(DRACProgram.number), rpcvers_t(version), nconf, &nb)
            }
        case .v6(let b):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = in_port_t(UInt16(port).bigEndian)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: b) }
            ok = withUnsafeMutableBytes(of: &sin6) { raw in
                var nb = netbuf(maxlen: UInt32(raw.count), len: UInt32(raw.count), buf: raw.baseAddress)
                return rpcb_set(rpcprog_t(DRACProgram.number), rpcvers_t(version), nconf, &nb)
            }
        }
        guard ok != 0 else {
            throw Failure(description: "rpcbind refused to register program \(DRACProgram.number) version \(version) on \(netid) (is rpcbind running?)")
        }
    }

    /// Removes every registration of the DRAC program (all versions, all transports).
    public static func unregisterAll() {
        for v in DRACProgram.versions {
            _ = rpcb_unset(rpcprog_t(DRACProgram.number), rpcvers_t(v), nil)
        }
    }
}
