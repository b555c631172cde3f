import Foundation
import Testing
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// Needs root: it creates a network namespace of its own.
@Suite("NetworkNamespace", .enabled(if: geteuid() == 0))
struct NetworkNamespaceTests {
    @Test("run executes on a thread inside the namespace, and the caller's thread stays where it was")
    func runInside() throws {
        let name = "ussys-\(UUID().uuidString.prefix(8).lowercased())"
        try HostCommand.run(["ip", "netns", "add", name])
        defer { _ = try? HostCommand.run(["ip", "netns", "delete", name]) }
        let inside = try NetworkNamespace.run(in: name, thread: "netns-test") { try Self.interfaces() }
        #expect(inside == ["lo"], "a fresh namespace has only its loopback")
        #expect(try Self.interfaces() != ["lo"], "the calling thread did not move")
    }

    @Test("a namespace that does not exist is an error, and body never runs")
    func missingNamespace() {
        let ran = Ran()
        #expect(throws: TransportError.self) {
            try NetworkNamespace.run(in: "ussys-missing-\(UUID().uuidString.prefix(8))", thread: "netns-test") { ran.value = true }
        }
        #expect(!ran.value)
    }

    /// The interfaces of the calling thread's network namespace.
    private static func interfaces() throws -> [String] {
        try String(contentsOfFile: "/proc/thread-self/net/dev", encoding: .utf8)
            .split(separator: "\n").dropFirst(2)
            .compactMap { $0.split(separator: ":").first?.trimmingCharacters(in: .whitespaces) }
    }
}

private final class Ran: @unchecked Sendable {
    var value = false
}
