import Foundation
import Testing
import UnderstudySystem
@testable import UnderstudyAgent

/// The `[fleet]` table, a host's capacity, and the figures it is measured from.
@Suite("Fleet configuration and capacity")
struct FleetConfigurationTests {
    private func configuration(_ fleet: String, backup: String = "") throws -> AgentConfiguration {
        try AgentConfiguration(document: TOMLDocument(parsing: """
            [node]
            name = "a"
            certificates = "/c"
            [peer]
            name = "b"
            [vm]
            id = "web-1"
            memory_mib = 512
            kernel = "/k"
            [witness]
            server_name = "etcd-1"
            \(backup)
            \(fleet)
            """, source: "agent.toml"))
    }

    private func failure(_ fleet: String) -> ConfigurationError? {
        do {
            _ = try configuration(fleet)
            return nil
        } catch {
            return error as? ConfigurationError
        }
    }

    @Test func noFleetKeysMeansNoRegistry() throws {
        #expect(try configuration("").fleet == nil)
        #expect(try configuration("[fleet]\ndrills_at_once = 2").fleet == nil, "the drills' key alone needs no registry")
    }

    @Test func defaultsComeFromTheNodeAndItsVM() throws {
        let fleet = try #require(try configuration("[fleet]\nendpoints = [\"10.0.0.9:2379\", \"https://10.0.0.10:2379\"]",
                                                   backup: "[backup]\nreplica_dir = \"/dev/shm/r\"").fleet)
        #expect(fleet.endpoints == [Endpoint(host: "10.0.0.9", port: 2379), Endpoint(host: "10.0.0.10", port: 2379)])
        #expect(fleet.tls?.expectedPeerName == "etcd-1", "etcd's name defaults to witness.server_name")
        #expect(fleet.tls?.certificatePath == "/c/a.pem", "the node's own certificate")
        #expect(fleet.host == FleetConfiguration.hostName() && !fleet.host.isEmpty)
        #expect(fleet.leaseTTL == .seconds(5) && fleet.publishPeriod == .seconds(1))
        #expect(fleet.maxPrimaries == nil && fleet.maxBackups == nil)
        #expect(fleet.slotMemoryBytes == 512 << 20, "one more VM needs as much as this one")
        #expect(fleet.replicaDirectory == "/dev/shm/r")
    }

    @Test func everyKeyIsRead() throws {
        let fleet = try #require(try configuration("""
            [fleet]
            endpoints = ["10.0.0.9:2379"]
            server_name = "registry"
            host = "hv-7"
            lease_ttl_s = 10
            publish_ms = 500
            max_primaries = 4
            max_backups = 6
            slot_memory_mib = 2048
            """).fleet)
        #expect(fleet.tls?.expectedPeerName == "registry" && fleet.host == "hv-7")
        #expect(fleet.leaseTTL == .seconds(10) && fleet.publishPeriod == .milliseconds(500))
        #expect(fleet.maxPrimaries == 4 && fleet.maxBackups == 6 && fleet.slotMemoryBytes == 2048 << 20)
    }

    @Test func badValuesNameTheKey() {
        let missing = failure("[fleet]\nhost = \"hv-1\"")
        #expect(missing?.key == "fleet.endpoints" && missing?.message.contains("missing") == true, "\(String(describing: missing))")
        #expect(missing?.line != nil, "points at the [fleet] table's first key")
        #expect(failure("[fleet]\nendpoints = []")?.message.contains("empty") == true)
        let plain = failure("[fleet]\nendpoints = [\"http://10.0.0.9:2379\"]")
        #expect(plain?.key == "fleet.endpoints" && plain?.message.contains("TLS") == true, "\(String(describing: plain))")
        #expect(failure("[fleet]\nendpoints = [\"10.0.0.9\"]")?.key == "fleet.endpoints", "no port")
        let slash = failure("[fleet]\nendpoints = [\"10.0.0.9:2379\"]\nhost = \"rack/1\"")
        #expect(slash?.key == "fleet.host" && slash?.message.contains("'/'") == true, "\(String(describing: slash))")
        #expect(failure("[fleet]\nendpoints = [\"10.0.0.9:2379\"]\nhost = \"\"")?.key == "fleet.host")
        #expect(failure("[fleet]\nendpoints = [\"10.0.0.9:2379\"]\nlease_ttl_s = 1")?.key == "fleet.lease_ttl_s",
                "etcd's shortest lease with its default election timeout is 2 s")
        #expect(failure("[fleet]\nendpoints = [\"10.0.0.9:2379\"]\nmax_primaries = -1")?.key == "fleet.max_primaries")
        let slow = failure("[fleet]\nendpoints = [\"10.0.0.9:2379\"]\nlease_ttl_s = 2\npublish_ms = 2000")
        #expect(slow?.key == "fleet.publish_ms" && slow?.message.contains("vanish") == true, "\(String(describing: slow))")
        let typo = failure("[fleet]\nendpoints = [\"10.0.0.9:2379\"]\nmax_backup = 3")
        #expect(typo?.message.contains("did you mean fleet.max_backups?") == true, "\(String(describing: typo))")
    }

    @Test func slotsAreTheLimitMinusWhatRunsCappedByFreeSpace() {
        let gib: UInt64 = 1 << 30
        let resources = HostResources(memoryTotalBytes: 64 * gib, memoryAvailableBytes: 10 * gib + 1,
                                      replicaSpaceTotalBytes: 32 * gib, replicaSpaceFreeBytes: 3 * gib)
        func record(_ vm: String, _ host: String, _ role: AgentStatus.Role) -> FleetRecord {
            FleetRecord(vm: vm, host: host, node: host, role: role, state: "protecting", peer: "x", publishedAt: 0)
        }
        let records = [record("a", "hv-1", .primary), record("b", "hv-1", .primary), record("c", "hv-1", .backup),
                       record("d", "hv-2", .primary), record("e", "hv-1", .starting)]
        let capped = HostCapacity(host: "hv-1", resources: resources, slotMemoryBytes: 2 * gib, maxPrimaries: 4, maxBackups: 8,
                                  records: records, publishedAt: 1)
        #expect(capped.primaries == 2 && capped.backups == 1, "other hosts' entries and starting nodes do not count")
        #expect(capped.primarySlots == 2, "max 4 minus 2 running (memory would allow 5)")
        #expect(capped.backupSlots == 1, "3 GiB of replica space holds one more 2 GiB replica (the limit would allow 7)")
        let full = HostCapacity(host: "hv-1", resources: resources, slotMemoryBytes: 2 * gib, maxPrimaries: 1, maxBackups: nil,
                                records: records, publishedAt: 1)
        #expect(full.primarySlots == 0, "over its limit already: none, not a negative count")
        let noReplicaDirectory = HostCapacity(host: "hv-1", resources: HostResources(memoryTotalBytes: 64 * gib, memoryAvailableBytes: 10 * gib),
                                              slotMemoryBytes: 2 * gib, maxPrimaries: nil, maxBackups: nil, records: [], publishedAt: 1)
        #expect(noReplicaDirectory.primarySlots == 5 && noReplicaDirectory.backupSlots == 5, "memory decides both")
    }

    @Test func meminfoGivesTotalAndAvailableInBytes() throws {
        let text = "MemTotal:       16315932 kB\nMemFree:          511212 kB\nMemAvailable:   10461780 kB\nHugePages_Total:       0\n"
        let memory = try #require(HostResources.meminfo(text))
        #expect(memory.total == 16_315_932 * 1024 && memory.available == 10_461_780 * 1024)
        #expect(HostResources.meminfo("MemTotal: 1 kB\n") == nil, "a kernel without MemAvailable is not guessed at")
    }

    @Test func aReplicaDirectoryNotYetMadeIsMeasuredAtItsParent() throws {
        let measured = HostResources.measure(replicaDirectory: NSTemporaryDirectory() + "understudy-no-such-\(UUID().uuidString)/replica")
        #expect(measured.memoryTotalBytes > 0 && measured.memoryAvailableBytes > 0 && measured.memoryAvailableBytes <= measured.memoryTotalBytes)
        let free = try #require(measured.replicaSpaceFreeBytes)
        #expect(free <= measured.replicaSpaceTotalBytes ?? 0)
    }

    @Test func theFleetCommandsSayWhatTheyNeed() throws {
        let bare = try runCLI(["fleet", "status"])
        #expect(bare.status != 0 && bare.stderr.contains("give --etcd, --certs and --node"), "\(bare.stderr)")
        let both = try runCLI(["fleet", "hosts", "--etcd", "127.0.0.1:2379", "--certs", "/c", "--node", "admin", "--watch", "--json"])
        #expect(both.status != 0 && both.stderr.contains("--watch"), "\(both.stderr)")
        let mixed = try runCLI(["fleet", "status", "--config", "/c/node.toml", "--node", "admin"])
        #expect(mixed.status != 0 && mixed.stderr.contains("--config"), "\(mixed.stderr)")
        let badEndpoint = try runCLI(["fleet", "status", "--etcd", "127.0.0.1", "--certs", "/c", "--node", "admin"])
        #expect(badEndpoint.status != 0 && badEndpoint.stderr.contains("--etcd"), "\(badEndpoint.stderr)")
    }
}
