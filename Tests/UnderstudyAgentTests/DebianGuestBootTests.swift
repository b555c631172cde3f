import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags

/// Boots the Debian benchmark guest (Deploy/guest/build-debian.sh) the way `--pgbench` runs its
/// bare configuration. Minutes under TCG and a 1 GiB guest, and it needs the image built, so it
/// runs only on request: UNDERSTUDY_DEBIAN=1 with the image in place.
@Suite("Debian guest boot", .tags(.vm), .skippedInQuickLoop,
       .enabled(if: ProcessInfo.processInfo.environment["UNDERSTUDY_DEBIAN"] == "1" && DebianGuest().isBuilt,
                "set UNDERSTUDY_DEBIAN=1 and build the guest with Deploy/guest/build-debian.sh"))
struct DebianGuestBootTests {
    @Test("a copy of the root disk boots; PostgreSQL answers the client namespace with the bench database at scale 5")
    func bootsAndServesTheBenchDatabase() throws {
        let guest = DebianGuest()
        let workspace = try TemporaryDirectory("debian-boot")
        defer { workspace.remove() }
        let network = try PairNetwork(tapCount: 2)
        defer { network.remove() }
        let vm = "deb\(UUID().uuidString.prefix(6).lowercased())"
        let disk = "\(workspace.path)/disk.img"
        try guest.copyRootDisk(to: disk)
        let configs = try AgentPair.writeConfigs(in: workspace.path, port: 1, vm: vm, guest: (guest.kernel, guest.initrd),
                                                 cmdline: DebianGuest.commandLine, replicaDirectory: "/dev/shm/understudy-\(vm)-replica",
                                                 disks: (disk, disk), taps: (network.taps[0], network.taps[1]),
                                                 memoryMiB: DebianGuest.memoryMiB)
        let machine = try UnprotectedVM(configuration: AgentConfiguration(contentsOfFile: configs.primary),
                                        preloadLibrary: TestGuest.preloadLibrary, logger: quietLogger)
        defer {
            machine.stop()
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        try guest.waitUntilPostgresAnswers(namespace: network.namespace, timeout: .seconds(300), failed: { machine.failure })

        let rows = try HostCommand.run(guest.treeCommand(namespace: network.namespace, [
            DebianGuest.clientProgram("psql"), "-h", DebianGuest.address, "-U", DebianGuest.user, "-d", DebianGuest.database,
            "-Atc", "SELECT count(*) FROM pgbench_accounts"]))
        #expect(rows == "500000", "pgbench -i -s 5 makes 100,000 accounts per unit of scale")
        // Decoded leniently: a boot's console output is not always valid UTF-8.
        let serial = String(decoding: FileManager.default.contents(atPath: "\(workspace.path)/run-primary/serial.log") ?? Data(), as: UTF8.self)
        #expect(serial.contains("understudy-debian login:"), "a getty on the serial console (console=ttyS0)")
    }
}
