import Foundation
import Testing
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

@Suite("Endpoint and TCP sockets")
struct EndpointAndSocketTests {
    @Test(arguments: [
        ("127.0.0.1:7000", "127.0.0.1", 7000 as UInt16, "127.0.0.1:7000"),
        ("[::1]:7000", "::1", 7000, "[::1]:7000"),
        ("host:0", "host", 0, "host:0"),
        ("backup.example:65535", "backup.example", 65535, "backup.example:65535"),
        ("[fe80::1%eth0]:1", "fe80::1%eth0", 1, "[fe80::1%eth0]:1"),
    ])
    func parsesHostAndPort(text: String, host: String, port: UInt16, description: String) throws {
        let endpoint = try Endpoint(parsing: text)
        #expect(endpoint == Endpoint(host: host, port: port))
        #expect(endpoint.description == description)
        #expect(try Endpoint(parsing: endpoint.description) == endpoint, "description parses back")
    }

    @Test func theAnyAddressesAreWildcardsAndNamedHostsAreNot() throws {
        for text in ["0.0.0.0:7000", "[::]:7000"] { #expect(try Endpoint(parsing: text).isWildcard, "\(text)") }
        #expect(Endpoint(host: "", port: 1).isWildcard)
        for text in ["127.0.0.1:7000", "[::1]:7000", "backup.example:1", "10.0.0.0:1"] {
            #expect(try !Endpoint(parsing: text).isWildcard, "\(text)")
        }
    }

    @Test(arguments: [
        ("nohost", "\"nohost\" has no port (expected host:port)"),
        ("", "\"\" has no port (expected host:port)"),
        (":1", "\":1\" is not host:port with a port from 0 to 65535"),
        ("[]:1", "\"[]:1\" is not host:port with a port from 0 to 65535"),
        ("h:70000", "\"h:70000\" is not host:port with a port from 0 to 65535"),
        ("h:65536", "\"h:65536\" is not host:port with a port from 0 to 65535"),
        ("h:x", "\"h:x\" is not host:port with a port from 0 to 65535"),
        ("h:", "\"h:\" is not host:port with a port from 0 to 65535"),
        ("h:-1", "\"h:-1\" is not host:port with a port from 0 to 65535"),
        ("h: 80", "\"h: 80\" is not host:port with a port from 0 to 65535"),
        ("[::1]", "\"[::1]\" is not host:port with a port from 0 to 65535"),
    ])
    func rejectsMalformedEndpoints(text: String, message: String) {
        #expect(throws: TransportError.invalidAddress(message)) { try Endpoint(parsing: text) }
    }

    @Test func listenerOnPortZeroReportsTheRealPort() throws {
        let listener = try localListener()
        defer { listener.close() }
        #expect(listener.endpoint.host == "127.0.0.1")
        #expect(listener.endpoint.port != 0)
        // A second listener gets a different port.
        let other = try localListener()
        defer { other.close() }
        #expect(other.endpoint.port != listener.endpoint.port)
        // And the reported port is the one that accepts connections.
        let fd = try rawConnect(port: listener.endpoint.port)
        defer { close(fd) }
        let (accepted, peer) = try listener.accept()
        defer { close(accepted) }
        #expect(peer.hasPrefix("127.0.0.1:"))
        #expect(peer != "127.0.0.1:\(listener.endpoint.port)")
        var nodelay: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(accepted, Int32(IPPROTO_TCP), TCP_NODELAY, &nodelay, &length) == 0)
        #expect(nodelay == 1, "accepted sockets disable Nagle")
        #expect(fcntl(accepted, F_GETFD) & FD_CLOEXEC != 0, "accepted sockets are close-on-exec")
        #expect(fcntl(accepted, F_GETFL) & O_NONBLOCK == 0, "accepted sockets are blocking")
    }

    @Test func listeningOnABusyPortFails() throws {
        let listener = try localListener()
        defer { listener.close() }
        let error = #expect(throws: TransportError.self) {
            _ = try TCPListener(endpoint: listener.endpoint)
        }
        #expect(error == .system(operation: "listen on \(listener.endpoint)", errno: EADDRINUSE))
    }

    @Test func closingTheListenerWakesABlockedAccept() throws {
        let listener = try localListener()
        let accepting = Background { try listener.accept() }
        usleep(100_000)
        #expect(!accepting.isFinished)
        listener.close()
        let error = accepting.error(within: 5)
        #expect(error?.transportError == .closed("listener on \(listener.endpoint) was closed"))
    }

    @Test func connectingToAClosedPortIsRefused() throws {
        try withCertificates { dir in
            // A socket bound but not listening holds the port (no other test can take it) and
            // answers connection attempts with a reset.
            let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            #expect(holder >= 0)
            defer { close(holder) }
            var address = loopbackAddress(port: 0)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            #expect(bound == 0)
            var actual = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &actual) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(holder, $0, &length) }
            }
            let port = UInt16(bigEndian: actual.sin_port)
            #expect(port != 0)

            let endpoint = Endpoint(host: "127.0.0.1", port: port)
            let error = #expect(throws: TransportError.self) {
                try TLSStream.connect(to: endpoint, context: clientContext(dir), timeoutMilliseconds: 2000)
            }
            #expect(error == .connectFailed(address: "127.0.0.1:\(port)", errno: ECONNREFUSED))
            #expect(error?.description == "cannot connect to 127.0.0.1:\(port): Connection refused")
        }
    }
}
