import Foundation
import Testing
import UnderstudyNetwork
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTransport
#if canImport(Glibc)
import Glibc
#endif

/// Runs a command to completion; throws with its error output when it fails.
@discardableResult
func run(_ arguments: String...) throws -> String { try HostCommand.run(arguments) }

/// A unique short suffix for names (interfaces allow 15 characters).
func uniqueSuffix() -> String { String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(8)).lowercased() }

/// A socket path no other test uses.
func uniqueSocketPath() -> String { "\(NSTemporaryDirectory())understudy-gate-\(uniqueSuffix()).sock" }

/// A gate-created TAP name no other test uses.
func uniqueTAPName() -> String { "usgc\(uniqueSuffix())" }

// MARK: - Namespace lab

/// A persistent TAP device (created in the host namespace so that the gate can attach to it)
/// and a fresh network namespace it moves into, where the "network" side of the tests lives:
/// the TAP at 10.99.0.1/24, the fake guest at 10.99.0.2. Nothing the tests send leaves it.
final class NetworkLab {
    static let hostIP: [UInt8] = [10, 99, 0, 1]
    static let guestIP: [UInt8] = [10, 99, 0, 2]
    static let guestMAC: [UInt8] = [0x52, 0x54, 0x00, 0x99, 0x00, 0x02]
    static var guestMACText: String { guestMAC.map { String(format: "%02x", $0) }.joined(separator: ":") }

    let tap: String
    let namespace: String
    private var children: [NamespaceProcess] = []

    init() throws {
        let suffix = uniqueSuffix()
        tap = "usgt\(suffix)"
        namespace = "understudy-gatetest-\(suffix)"
        try run("ip", "tuntap", "add", "dev", tap, "mode", "tap")
        do {
            try run("ip", "netns", "add", namespace)
            // No IPv6 in the namespace: its router solicitations would be noise for the fake guest.
            try run("ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        } catch {
            remove()
            throw error
        }
    }

    /// Moves the TAP into the namespace, addresses it and brings it up (after the gate attached).
    func moveTAPIntoNamespace() throws {
        try run("ip", "link", "set", tap, "netns", namespace)
        try run("ip", "-n", namespace, "addr", "add", "10.99.0.1/24", "dev", tap)
        try run("ip", "-n", namespace, "link", "set", tap, "up")
        try run("ip", "-n", namespace, "link", "set", "lo", "up")
    }

    /// The TAP's MAC address (the destination of frames the fake guest sends to the namespace).
    func tapMAC() throws -> [UInt8] {
        let text = try run("ip", "netns", "exec", namespace, "cat", "/sys/class/net/\(tap)/address")
        return text.split(separator: ":").map { UInt8($0, radix: 16)! }
    }

    /// Lets the namespace reach the guest's IP without ARP (the fake guest does not answer ARP).
    func addGuestNeighbour() throws {
        try run("ip", "-n", namespace, "neigh", "add", "10.99.0.2", "lladdr", NetworkLab.guestMACText, "dev", tap, "nud", "permanent")
    }

    /// A python3 program running in the namespace; it must print "ready" once listening.
    func python(_ script: String) throws -> NamespaceProcess {
        let process = try NamespaceProcess(["ip", "netns", "exec", namespace, "python3", "-u", "-c", script])
        children.append(process)
        guard process.line(within: 10) == "ready" else { throw HarnessError("helper in \(namespace) did not start") }
        return process
    }

    /// A UDP listener at 10.99.0.1:`port` printing each datagram's payload as hex, one per line.
    func udpListener(port: UInt16) throws -> NamespaceProcess {
        try python("""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("10.99.0.1", \(port)))
        print("ready")
        while True:
            print(s.recv(65536).hex())
        """)
    }

    /// Prints, as hex, every frame arriving at the TAP from the gate (not those the namespace sends).
    func frameCapture() throws -> NamespaceProcess {
        try python("""
        import socket
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        s.bind(("\(tap)", 0))
        print("ready")
        while True:
            frame, address = s.recvfrom(65536)
            if address[2] != socket.PACKET_OUTGOING:
                print(frame.hex())
        """)
    }

    /// Sends one UDP datagram from the namespace to the guest.
    func sendToGuest(_ payload: String, port: UInt16) throws {
        try run("ip", "netns", "exec", namespace, "python3", "-c",
                "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'\(payload)', ('10.99.0.2', \(port)))")
    }

    /// Removes everything this lab created, whichever step it reached. Idempotent.
    func remove() {
        for child in children { child.terminate() }
        children = []
        _ = try? run("ip", "-n", namespace, "link", "del", tap)
        _ = try? run("ip", "link", "del", tap)
        _ = try? run("ip", "netns", "del", namespace)
    }

    deinit { remove() }
}

/// A child process whose standard output is read line by line with a deadline.
final class NamespaceProcess {
    private let process = Process()
    private let output = Pipe()
    private var pending: [UInt8] = []

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// The next line, or nil when none arrives within `seconds`.
    func line(within seconds: Double) -> String? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        let fd = output.fileHandleForReading.fileDescriptor
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                return line
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(remaining * 1000) + 1) == 1 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { return nil }
            pending += chunk[0..<n]
        }
    }

    /// All lines arriving within `seconds`.
    func lines(within seconds: Double) -> [String] {
        let deadline = Date(timeIntervalSinceNow: seconds)
        var lines: [String] = []
        while let line = line(within: max(0, deadline.timeIntervalSinceNow)) { lines.append(line) }
        return lines
    }

    /// SIGKILL, because children started from Swift Testing's worker threads inherit their
    /// blocked signal mask, SIGTERM included.
    func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

// MARK: - Fake QEMU

/// Stands in for QEMU's `-netdev stream` client: connects to the gate's socket and exchanges
/// length-prefixed frames.
final class FakeQEMU {
    let fd: Int32
    private var pending: [UInt8] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0, UnixSocket.connect(fd, path: path) == 0 else {
            let code = errno
            if fd >= 0 { close(fd) }
            throw HarnessError("connect to \(path): \(String(cString: strerror(code)))")
        }
    }

    deinit { close(fd) }

    func send(frame: [UInt8]) {
        let length = UInt32(frame.count)
        write([UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + frame)
    }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// The next frame from the gate; nil on timeout or when the gate closed the connection.
    func receiveFrame(within seconds: Double) -> [UInt8]? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while true {
            if pending.count >= 4 {
                let length = Int(pending[0]) << 24 | Int(pending[1]) << 16 | Int(pending[2]) << 8 | Int(pending[3])
                if pending.count >= 4 + length {
                    let frame = Array(pending[4..<(4 + length)])
                    pending.removeFirst(4 + length)
                    return frame
                }
            }
            guard fill(until: deadline) == .data else { return nil }
        }
    }

    /// True when the gate closes the connection within `seconds` (anything it sends is skipped).
    func waitForClose(within seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while true {
            switch fill(until: deadline) {
            case .data: pending = []
            case .closed: return true
            case .timeout: return false
            }
        }
    }

    private enum Fill { case data, closed, timeout }

    private func fill(until deadline: Date) -> Fill {
        let remaining = deadline.timeIntervalSinceNow
        guard remaining > 0 else { return .timeout }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(remaining * 1000) + 1) == 1 else { return .timeout }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        guard n > 0 else { return .closed }
        pending += chunk[0..<n]
        return .data
    }
}

// MARK: - Frames

/// An Ethernet + IPv4 + UDP frame with correct checksums.
func udpFrame(to destinationMAC: [UInt8], from sourceMAC: [UInt8], sourceIP: [UInt8], destinationIP: [UInt8],
              sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8]) -> [UInt8] {
    let udpLength = 8 + payload.count
    var udp = be16(sourcePort) + be16(destinationPort) + be16(UInt16(udpLength)) + [0, 0] + payload
    let pseudoHeader = sourceIP + destinationIP + [0, 17] + be16(UInt16(udpLength))
    let udpChecksum = internetChecksum(pseudoHeader + udp)
    udp[6...7] = ArraySlice(be16(udpChecksum == 0 ? 0xFFFF : udpChecksum))
    var ip: [UInt8] = [0x45, 0] + be16(UInt16(20 + udpLength)) + [0, 0, 0x40, 0, 64, 17, 0, 0] + sourceIP + destinationIP
    ip[10...11] = ArraySlice(be16(internetChecksum(ip)))
    return destinationMAC + sourceMAC + [0x08, 0x00] + ip + udp
}

/// The payload of an IPv4 UDP frame sent to `port`, nil for any other frame.
func udpPayload(of frame: [UInt8], port: UInt16) -> [UInt8]? {
    guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x00, frame[23] == 17 else { return nil }
    let udp = 14 + Int(frame[14] & 0x0F) * 4
    guard frame.count >= udp + 8, UInt16(frame[udp + 2]) << 8 | UInt16(frame[udp + 3]) == port else { return nil }
    let length = Int(frame[udp + 4]) << 8 | Int(frame[udp + 5])
    return Array(frame[(udp + 8)..<min(frame.count, udp + length)])
}

private func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

private func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count {
        sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

extension Array where Element == UInt8 {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}
