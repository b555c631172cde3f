import Testing
import UnderstudyQEMU

@Suite("VM description")
struct VMDescriptionTests {
    /// The files root's QEMU opens by name live in the VM's owner-only directory, one per run
    /// directory (a primary and a backup of one VM on one host never share it).
    @Test func ramAndDeviceStateLiveInThePrivateDirectory() {
        let primary = VMDescription(id: "web-1", memoryBytes: 64 << 20, kernel: "/k", runDirectory: "/run/understudy/web-1")
        var backup = primary
        backup.runDirectory = "/run/understudy/web-1-backup"
        for description in [primary, backup] {
            #expect(description.deviceStateFile == description.privateDirectory + "/device-state")
            #expect(description.ramFile == description.privateDirectory + "/ram")
            #expect(description.privateDirectory.hasPrefix("/dev/shm/understudy-web-1-"))
        }
        #expect(primary.privateDirectory != backup.privateDirectory)
    }

    @Test func anIdOutsideTheCharacterSetIsInvalid() {
        for id in ["a,b", "a b", "../x", "x/y", "-x", ".x", "", "a=b", String(repeating: "v", count: 64)] {
            #expect(!VMDescription.isValidID(id), "\(id.debugDescription)")
            var description = VMDescription(id: id, memoryBytes: 64 << 20, kernel: "/dev/null", runDirectory: "/tmp/x")
            description.id = id
            #expect(throws: QEMUError.self) { try description.validate() }
        }
        for id in ["web-1", "v", "db_2.prod", String(repeating: "v", count: 63)] { #expect(VMDescription.isValidID(id)) }
    }
}
