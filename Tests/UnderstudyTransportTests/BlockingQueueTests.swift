import Foundation
import Testing
import UnderstudySystem
import UnderstudyTransport

@Suite("BlockingQueue")
struct BlockingQueueTests {
    @Test func pushBlocksAtCapacityUntilAPop() throws {
        let queue = BlockingQueue<Int>(capacity: 2)
        #expect(queue.capacity == 2)
        #expect(queue.push(1))
        #expect(queue.push(2))
        #expect(queue.count == 2)
        let pushing = Background { queue.push(3) }
        usleep(100_000)
        #expect(!pushing.isFinished, "a third push waits for room")
        #expect(queue.count == 2)
        #expect(queue.pop() == 1)
        #expect(try pushing.value(within: 5) == true)
        #expect(queue.count == 2)
        #expect(queue.pop() == 2)
        #expect(queue.pop() == 3)
        #expect(queue.count == 0)
    }

    @Test func popBlocksUntilAPush() throws {
        let queue = BlockingQueue<String>(capacity: 1)
        let popping = Background { queue.pop() }
        usleep(100_000)
        #expect(!popping.isFinished, "pop waits for an element")
        #expect(queue.push("x"))
        #expect(try popping.value(within: 5) == "x")
    }

    @Test func closeWakesBlockedPoppersWithNil() throws {
        let queue = BlockingQueue<Int>(capacity: 4)
        let poppers = (0..<3).map { _ in Background { queue.pop() } }
        usleep(100_000)
        #expect(poppers.allSatisfy { !$0.isFinished })
        queue.close()
        for popper in poppers {
            #expect(try popper.value(within: 5) == nil)
        }
    }

    @Test func closeWakesBlockedPushersWhichDropTheirElements() throws {
        let queue = BlockingQueue<Int>(capacity: 1)
        #expect(queue.push(0))
        let pushers = (1...3).map { i in Background { queue.push(i) } }
        usleep(100_000)
        #expect(pushers.allSatisfy { !$0.isFinished })
        queue.close()
        for pusher in pushers {
            #expect(try pusher.value(within: 5) == false)
        }
        #expect(queue.pop() == 0, "what was queued before close still drains")
        #expect(queue.pop() == nil)
    }

    @Test func closedQueueDrainsThenReturnsNil() {
        let queue = BlockingQueue<Int>(capacity: 8)
        for i in 1...5 { #expect(queue.push(i)) }
        queue.close()
        #expect(queue.push(6) == false, "pushes fail once closed")
        #expect(queue.count == 5)
        #expect([queue.pop(), queue.pop(), queue.pop(), queue.pop(), queue.pop()] == [1, 2, 3, 4, 5])
        #expect(queue.pop() == nil)
        #expect(queue.pop() == nil)
        #expect(queue.count == 0)
        queue.close()  // idempotent
        #expect(queue.pop() == nil)
    }

    @Test func orderSurvivesCompactionUnderConcurrency() throws {
        // Far more elements than the compaction threshold pass through a small queue.
        let queue = BlockingQueue<Int>(capacity: 7)
        let total = 20_000
        let producer = Background {
            for i in 0..<total { precondition(queue.push(i)) }
            queue.close()
        }
        var received: [Int] = []
        received.reserveCapacity(total)
        while let value = queue.pop() { received.append(value) }
        try producer.value()
        #expect(received.count == total)
        #expect(received == Array(0..<total))
    }

    @Test func orderSurvivesCompactionWhenTheQueueIsLarge() {
        // Compaction kicks in with many elements still queued: none may be lost or reordered.
        let queue = BlockingQueue<Int>(capacity: 1000)
        var next = 0
        var expected = 0
        for round in 0..<20 {
            for _ in 0..<(100 + round * 13) where queue.count < queue.capacity {
                #expect(queue.push(next))
                next += 1
            }
            for _ in 0..<(90 + round * 7) where queue.count > 0 {
                #expect(queue.pop() == expected)
                expected += 1
            }
            #expect(queue.count == next - expected)
        }
        queue.close()
        while let value = queue.pop() {
            #expect(value == expected)
            expected += 1
        }
        #expect(expected == next)
    }
}
