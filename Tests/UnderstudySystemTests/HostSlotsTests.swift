#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import UnderstudySystem
import UnderstudyHarness

/// The host-wide slots: contenders in this process, and one in another process (`flock(1)`).
@Suite("HostSlots")
struct HostSlotsTests {
    func directory() -> String { "/tmp/understudy-slots-\(UUID().uuidString.prefix(8))/drill-slots" }

    @Test func neverMoreHoldersThanSlotsAndAReleasedSlotIsFreeAgain() throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let one = HostSlots(directory: path, count: 1)
        let first = try #require(try one.tryTake())
        #expect(try one.tryTake() == nil, "a second contender for the one slot")
        // Another agent configured with two slots on the same host: it gets the second one only.
        let two = HostSlots(directory: path, count: 2)
        let second = try #require(try two.tryTake())
        #expect(second.index == 1)
        #expect(try two.tryTake() == nil)
        first.release()
        let again = try #require(try one.tryTake())
        #expect(again.index == 0)
        again.release()
        second.release()
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o700, "owner-only")
    }

    /// A process being started (between its fork and its exec) holds a copy of every descriptor:
    /// the slot must be free once released, not once that child execs.
    @Test func aReleasedSlotIsFreeWhileAChildBeingStartedHoldsItsDescriptor() throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let slots = HostSlots(directory: path, count: 1)
        let slot = try #require(try slots.tryTake())
        let copy = try #require(OpenFileCopy(of: slots.path(of: 0)), "the slot's file is not open")
        defer { copy.close() }
        slot.release()
        let again = try #require(try slots.tryTake(), "the released slot is still locked")
        again.release()
    }

    @Test func aSlotHeldByAnotherProcessIsTakenAndFreedWhenItEnds() throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let slots = HostSlots(directory: path, count: 1)
        try slots.tryTake()?.release()
        let holder = try SpawnedProcess(executable: "/usr/bin/flock", arguments: ["flock", "-x", slots.path(of: 0), "sleep", "30"],
                                        environment: ["PATH": "/usr/bin:/bin"])
        defer {
            holder.signalGroup(SIGKILL)
            while holder.exitStatus() == nil { Thread.sleep(forTimeInterval: 0.01) }
        }
        let held = ContinuousClock.now + .seconds(10)
        var taken = try slots.tryTake()
        while let slot = taken, ContinuousClock.now < held {
            // flock(1) has not locked it yet.
            slot.release()
            Thread.sleep(forTimeInterval: 0.02)
            taken = try slots.tryTake()
        }
        #expect(taken == nil, "the other process's slot was taken")
        holder.signalGroup(SIGKILL)
        while holder.exitStatus() == nil { Thread.sleep(forTimeInterval: 0.01) }
        let freed = try #require(try slots.tryTake(), "a holder that died freed its slot")
        freed.release()
    }

    @Test func aDirectoryOthersMayWriteIsRefused() throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o777)
        #expect { try HostSlots(directory: path, count: 1).tryTake() } throws: { "\($0)".contains("may be written by others") }
    }
}
