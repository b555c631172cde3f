// Applies checkpoints to a replica in a loop, forever, so that a test can SIGKILL it at a random
// moment and check that the replica reopens at exactly one whole epoch.
//
// Usage: ReplicaCrashHelper DIRECTORY PAGES_PER_EPOCH [KILL_AFTER_SEAL_OF_EPOCH]
// Epoch E writes every page P in 0..<PAGES_PER_EPOCH with the 64-bit words (E << 32 | P) and
// the device state "epoch E" padded with dots to 2 KiB, as device-state-delta carries it: whole in
// the first epoch of a run, then as a delta against the epoch before. Prints "committed E" after each commit. With the third argument
// it SIGKILLs itself right after sealing that epoch, before applying it: the exact moment an
// acknowledged checkpoint exists only in the journal.
import Foundation
import UnderstudyProtocol
import UnderstudyReplica

let arguments = CommandLine.arguments
guard arguments.count == 3 || arguments.count == 4, let pagesPerEpoch = Int(arguments[2]) else {
    FileHandle.standardError.write(Data("usage: ReplicaCrashHelper DIRECTORY PAGES_PER_EPOCH [KILL_AFTER_SEAL_OF_EPOCH]\n".utf8))
    exit(64)
}
let killAfterSeal = arguments.count == 4 ? UInt64(arguments[3]) : nil
let identity = VMIdentity(id: "crash-test", memorySize: 16 << 20)
let pageSize = Int(identity.pageSize)

do {
    let store = try ReplicaStore(directory: arguments[1], identity: identity)
    if store.state.phase == .empty || store.state.phase == .syncing {
        try store.beginSync()
        try store.finishSync()
    }
    let encoder = PageEncoder(pageSize: pageSize, capabilities: [.lz4Pages])
    let decoders = (0..<2).map { _ in PageDecoder(pageSize: pageSize) }
    let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
    let unusedBase = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 64)
    var epoch = store.state.committedEpoch + 1
    var previousDeviceState: [UInt8]?
    while true {
        var staged = StagedEpoch(epoch: epoch, deviceStateEncoded: true)
        var next = 0
        while next < pagesPerEpoch {
            var builder = PageBatchBuilder(type: .pages, epoch: epoch, capacity: 256 * encoder.maxEncodedSize)
            for index in next..<min(next + 256, pagesPerEpoch) {
                for word in 0..<(pageSize / 8) {
                    page.storeBytes(of: epoch << 32 | UInt64(index), toByteOffset: word * 8, as: UInt64.self)
                }
                encoder.append(page: UnsafeRawBufferPointer(page), index: UInt64(index), lastSent: unusedBase, to: &builder)
            }
            next += 256
            staged.add(try PageBatch(frame: builder.finish(), pageSize: pageSize, pageCount: identity.pageCount))
        }
        let label = Array("epoch \(epoch)".utf8)
        let deviceState = label + [UInt8](repeating: UInt8(ascii: "."), count: 2048 - label.count)
        staged.add(DeviceStateChunk(epoch: epoch, offset: 0, data: DeviceStateCodec.encode(deviceState, previous: previousDeviceState)))
        previousDeviceState = deviceState
        try store.seal(staged, decoders: decoders)
        if epoch == killAfterSeal { kill(getpid(), SIGKILL) }
        try store.applySealed()
        FileHandle.standardOutput.write(Data("committed \(epoch)\n".utf8))
        epoch += 1
    }
} catch {
    FileHandle.standardError.write(Data("ReplicaCrashHelper: \(error)\n".utf8))
    exit(1)
}
