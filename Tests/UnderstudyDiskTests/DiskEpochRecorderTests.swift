import Testing
import UnderstudyDisk
import UnderstudyProtocol

@Suite struct DiskEpochRecorderTests {
    @Test func sealTakesTheChangesSinceThePreviousSealInOrder() {
        let recorder = DiskEpochRecorder()
        #expect(recorder.seal().isEmpty)
        recorder.diskChanged(offset: 4096, data: .bytes([1, 2, 3]))
        recorder.diskChanged(offset: 0, data: .zeroes(length: 512))
        recorder.diskFlushed()
        #expect(recorder.pendingBytes == 515)
        #expect(recorder.seal() == [.write(offset: 4096, data: .bytes([1, 2, 3])), .write(offset: 0, data: .zeroes(length: 512)), .flush])
        #expect(recorder.pendingBytes == 0)
        recorder.diskChanged(offset: 8, data: .bytes([9]))
        #expect(recorder.seal() == [.write(offset: 8, data: .bytes([9]))])
        #expect(recorder.seal().isEmpty)
    }
}
