import Foundation
import Testing
@testable import UnderstudyNetwork

@Suite struct TransmitQueueTests {
    @Test func waitUntilSentReturnsOnlyOnceTheSenderTookAndWroteEveryFrame() {
        let queue = TransmitQueue(limit: 1 << 20)
        #expect(queue.enqueue([[1], [2]]) == (0, 0))
        #expect(!queue.waitUntilSent(timeout: .milliseconds(20)), "nobody is sending yet")
        let written = NSLock()
        nonisolated(unsafe) var frames: [[UInt8]] = []
        let sender = Thread {
            while let frame = queue.next() {
                Thread.sleep(forTimeInterval: 0.01)  // the write to the TAP
                written.withLock { frames.append(frame) }
            }
        }
        sender.start()
        #expect(queue.waitUntilSent(timeout: .seconds(10)))
        #expect(written.withLock { frames } == [[1], [2]], "both frames written before the wait ended")
        queue.close()
    }
}
