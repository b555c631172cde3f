import Testing
import UnderstudyAgent

/// `vm.id` names files (in /dev/shm, the run and state directories), QEMU's options and the
/// witness key: anything beyond a strict character set is refused, with the key named.
@Suite("vm.id")
struct VMIdentifierConfigurationTests {
    private static func configuration(id: String) throws(ConfigurationError) -> AgentConfiguration {
        let text = "[node]\nname = \"a\"\ncertificates = \"/c\"\n[peer]\nname = \"b\"\n[vm]\nid = \"\(id)\"\nmemory_mib = 64\nkernel = \"/k\"\n"
        return try AgentConfiguration(document: TOMLDocument(parsing: text, source: "vm.toml"))
    }

    @Test(arguments: ["a,b", "web 1", "../etc", "x/y", "-x", ".hidden", "", "a=b", "caf\u{e9}", String(repeating: "v", count: 64)])
    func anIdOutsideTheCharacterSetIsRefused(id: String) {
        do {
            _ = try Self.configuration(id: id)
            Issue.record("accepted vm.id \(id.debugDescription)")
        } catch {
            #expect(error.key == "vm.id", "\(error)")
            #expect(error.message.contains("letters, digits"), "\(error)")
        }
    }

    @Test(arguments: ["web-1", "v", "db_2.prod", "A9", String(repeating: "v", count: 63)])
    func aPlainIdIsAccepted(id: String) throws {
        #expect(try Self.configuration(id: id).vm.id == id)
    }
}
