import Glibc
import Testing
import UnderstudySystem

@Suite("Accept loop")
struct AcceptLoopTests {
    /// One scripted outcome of accept.
    enum Outcome {
        case connection(Int32)
        case failure(Int32)
        case closed
    }

    /// Runs a loop over `script`; returns the connections handled, the back-offs it waited, and the
    /// failures it reported. `stopAfterPauses`: the owner stops during that many-th back-off.
    static func run(_ script: [Outcome], stopAfterPauses: Int = .max)
        -> (handled: [Int32], pauses: [Duration], failures: [TransportError]) {
        var remaining = script[...]
        var handled: [Int32] = []
        var pauses: [Duration] = []
        var failures: [TransportError] = []
        var loop = AcceptLoop(backoff: AcceptBackoff(initial: .milliseconds(10), maximum: .milliseconds(40))) { () throws(TransportError) in
            switch remaining.popFirst() ?? .closed {
            case .connection(let fd): return (fd, "peer-\(fd)")
            case .failure(let code): throw .system(operation: "accept", errno: code)
            case .closed: throw .closed("listener closed")
            }
        }
        loop.run(pause: { delay in
            pauses.append(delay)
            return pauses.count >= stopAfterPauses
        }, failed: { error, _ in failures.append(error) }, handle: { fd, peer in
            #expect(peer == "peer-\(fd)")
            handled.append(fd)
        })
        return (handled, pauses, failures)
    }

    @Test("a failed accept is retried after a back-off that doubles, and a success resets it")
    func failuresAreRetried() {
        let result = Self.run([.failure(EMFILE), .failure(ENFILE), .failure(ENOBUFS), .failure(EMFILE), .connection(7),
                               .failure(ECONNABORTED), .connection(8), .closed, .connection(9)])
        #expect(result.handled == [7, 8], "the loop keeps accepting after failures and ends when the listener closes")
        #expect(result.pauses == [.milliseconds(10), .milliseconds(20), .milliseconds(40), .milliseconds(40), .milliseconds(10)])
        #expect(result.failures == [.system(operation: "accept", errno: EMFILE), .system(operation: "accept", errno: ENFILE),
                                    .system(operation: "accept", errno: ENOBUFS), .system(operation: "accept", errno: EMFILE),
                                    .system(operation: "accept", errno: ECONNABORTED)])
    }

    @Test("stopping during a back-off ends the loop; a closed listener ends it without a failure")
    func stopping() {
        let stopped = Self.run([.failure(EMFILE), .failure(EMFILE), .connection(3)], stopAfterPauses: 2)
        #expect(stopped.handled == [] && stopped.pauses.count == 2)
        let closed = Self.run([.closed])
        #expect(closed.handled == [] && closed.pauses == [] && closed.failures == [])
    }
}
