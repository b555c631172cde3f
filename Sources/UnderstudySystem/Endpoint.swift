import CUnderstudyShims
#if canImport(Glibc)
import Glibc
#endif

/// A `host:port` endpoint ("127.0.0.1:7000", "[::1]:7000", "backup.example:7000").
public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(TransportError) {
        guard let colon = text.lastIndex(of: ":") else {
            throw .invalidAddress("\"\(text)\" has no port (expected host:port)")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = UInt16(text[text.index(after: colon)...]) else {
            throw .invalidAddress("\"\(text)\" is not host:port with a port from 0 to 65535")
        }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for a host that stands for every address of this host (a listener's "any"): another
    /// host cannot reach it under that name.
    public var isWildcard: Bool { Self.isWildcard(host) }

    /// True when `host` stands for every address ("0.0.0.0", "::" or empty).
    public static func isWildcard(_ host: String) -> Bool { ["0.0.0.0", "::", ""].contains(host) }

    /// Resolves to socket addresses (getaddrinfo).
    package func resolve(passive: Bool, socketType: Int32 = Int32(SOCK_STREAM.rawValue)) throws(TransportError) -> [(family: Int32, address: [UInt8])] {
        var hints = addrinfo()
        hints.ai_socktype = socketType
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else {
            throw .invalidAddress("cannot resolve \(self): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var result: [(Int32, [UInt8])] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let entry = cursor {
            let bytes = UnsafeRawBufferPointer(start: entry.pointee.ai_addr, count: Int(entry.pointee.ai_addrlen))
            result.append((entry.pointee.ai_family, Array(bytes)))
            cursor = entry.pointee.ai_next
        }
        return result
    }
}
