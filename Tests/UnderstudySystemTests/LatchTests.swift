import Foundation
import Testing
import UnderstudySystem

@Suite struct LatchTests {
    @Test func isUnsetUntilTriggeredAndSetForGood() {
        let latch = Latch()
        #expect(!latch.isSet)
        #expect(!latch.wait(timeout: .zero), "an unset latch times out")
        latch.trigger()
        latch.trigger()
        #expect(latch.isSet)
        #expect(latch.wait(timeout: .zero), "a set latch does not wait")
        latch.wait()
    }

    @Test func wakesAThreadThatWaits() {
        let latch = Latch()
        let started = Latch()
        let waiter = JoinableThread(name: "latch-waiter") {
            started.trigger()
            latch.wait()
        }
        started.wait()
        latch.trigger()
        waiter.join()
        #expect(latch.isSet)
    }
}
