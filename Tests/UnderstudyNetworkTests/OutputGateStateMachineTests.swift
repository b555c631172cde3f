import Testing
import UnderstudyNetwork

/// A frame recognisable by its first byte, `size` bytes long.
private func frame(_ tag: UInt8, size: Int = 60) -> [UInt8] {
    [tag] + [UInt8](repeating: 0xEE, count: size - 1)
}

@Suite struct OutputGateStateMachineTests {
    @Test func framesWaitForTheAcknowledgementOfTheirEpoch() {
        var gate = OutputGateStateMachine()
        #expect(gate.isBuffering)
        #expect(gate.guestFrame(frame(1)) == .hold)
        #expect(gate.guestFrame(frame(2)) == .hold)
        #expect(gate.statistics.heldFrames == 2)
        #expect(gate.statistics.heldBytes == 120)
        #expect(gate.seal(epoch: 1) == .sealed(frames: 2))
        #expect(gate.statistics.heldFrames == 2, "sealing releases nothing")
        #expect(gate.acknowledged(through: 1) == .send([frame(1), frame(2)]))
        #expect(gate.statistics.heldFrames == 0)
        #expect(gate.statistics.heldBytes == 0)
        #expect(gate.statistics.releasedFrames == 2)
        #expect(gate.statistics.releasedBytes == 120)
        #expect(gate.statistics.lastSealedEpoch == 1)
        #expect(gate.statistics.lastReleasedEpoch == 1)
    }

    @Test func aFrameReadAfterSealNWaitsForNPlusOne() {
        var gate = OutputGateStateMachine()
        _ = gate.guestFrame(frame(1))
        #expect(gate.seal(epoch: 1) == .sealed(frames: 1))
        _ = gate.guestFrame(frame(2))
        #expect(gate.acknowledged(through: 1) == .send([frame(1)]))
        #expect(gate.statistics.heldFrames == 1, "the frame read after seal(1) belongs to epoch 2")
        #expect(gate.seal(epoch: 2) == .sealed(frames: 1))
        #expect(gate.acknowledged(through: 2) == .send([frame(2)]))
        #expect(gate.statistics.heldFrames == 0)
    }

    @Test func theOpenEpochIsNeverReleased() {
        var gate = OutputGateStateMachine()
        _ = gate.guestFrame(frame(1))
        #expect(gate.acknowledged(through: 5) == .unsealed(send: [], lastSealed: nil), "nothing sealed yet")
        #expect(gate.seal(epoch: 1) == .sealed(frames: 1))
        _ = gate.guestFrame(frame(2))
        #expect(gate.acknowledged(through: UInt64.max) == .unsealed(send: [frame(1)], lastSealed: 1),
                "an acknowledgement beyond the last sealed epoch releases the sealed epochs only")
        #expect(gate.statistics.heldFrames == 1)
        #expect(gate.statistics.lastReleasedEpoch == 1)
        #expect(gate.seal(epoch: 2) == .sealed(frames: 1))
        #expect(gate.acknowledged(through: 2) == .send([frame(2)]))
    }

    @Test func releasesKeepFIFOOrderAcrossEpochs() {
        var gate = OutputGateStateMachine()
        var expected: [[UInt8]] = []
        var tag: UInt8 = 0
        for epoch in UInt64(1)...4 {
            for _ in 0..<Int(epoch) {
                tag += 1
                expected.append(frame(tag))
                #expect(gate.guestFrame(frame(tag)) == .hold)
            }
            #expect(gate.seal(epoch: epoch) == .sealed(frames: Int(epoch)))
        }
        #expect(gate.seal(epoch: 5) == .sealed(frames: 0), "an epoch may hold no frames")
        #expect(gate.acknowledged(through: 2) == .send(Array(expected[0..<3])))
        #expect(gate.acknowledged(through: 5) == .send(Array(expected[3...])))
        #expect(gate.statistics.releasedFrames == 10)
    }

    @Test func olderAndDuplicateAcknowledgementsReleaseNothing() {
        var gate = OutputGateStateMachine()
        _ = gate.guestFrame(frame(1))
        _ = gate.seal(epoch: 1)
        _ = gate.guestFrame(frame(2))
        _ = gate.seal(epoch: 2)
        #expect(gate.acknowledged(through: 2) == .send([frame(1), frame(2)]))
        #expect(gate.acknowledged(through: 2) == .alreadyReleased(lastReleased: 2))
        #expect(gate.acknowledged(through: 1) == .alreadyReleased(lastReleased: 2))
        #expect(gate.statistics.releasedFrames == 2)
    }

    @Test func epochsMustIncreaseStrictly() {
        var gate = OutputGateStateMachine()
        #expect(gate.seal(epoch: 3) == .sealed(frames: 0))
        _ = gate.guestFrame(frame(1))
        #expect(gate.seal(epoch: 3) == .rejected(lastSealed: 3))
        #expect(gate.seal(epoch: 2) == .rejected(lastSealed: 3))
        #expect(gate.acknowledged(through: 3) == .send([]), "the frame stayed in the open epoch")
        #expect(gate.statistics.heldFrames == 1)
        #expect(gate.seal(epoch: 7) == .sealed(frames: 1), "gaps are allowed")
        #expect(gate.acknowledged(through: 6) == .send([]))
        #expect(gate.acknowledged(through: 7) == .send([frame(1)]))
    }

    @Test func aFullBufferDropsNewFramesUntilReleased() {
        var gate = OutputGateStateMachine(bufferLimit: 250)
        #expect(gate.guestFrame(frame(1, size: 100)) == .hold)
        #expect(gate.guestFrame(frame(2, size: 100)) == .hold)
        #expect(gate.guestFrame(frame(3, size: 100)) == .drop)
        #expect(gate.guestFrame(frame(4, size: 50)) == .hold, "a smaller frame still fits")
        #expect(gate.guestFrame(frame(5, size: 1)) == .drop)
        #expect(gate.statistics.droppedFrames == 2)
        #expect(gate.statistics.droppedBytes == 101)
        #expect(gate.statistics.heldBytes == 250)
        _ = gate.seal(epoch: 1)
        #expect(gate.guestFrame(frame(6, size: 100)) == .drop, "sealing frees nothing")
        #expect(gate.acknowledged(through: 1) == .send([frame(1, size: 100), frame(2, size: 100), frame(4, size: 50)]))
        #expect(gate.guestFrame(frame(7, size: 100)) == .hold)
        #expect(gate.guestFrame(frame(8, size: 150)) == .hold)
        _ = gate.seal(epoch: 2)
        #expect(gate.acknowledged(through: 2) == .send([frame(7, size: 100), frame(8, size: 150)]),
                "dropped frames are never released")
        #expect(gate.statistics.droppedFrames == 3)
        #expect(gate.statistics.releasedFrames == 5)
    }

    @Test func unbufferedModePassesFramesAtOnce() {
        var gate = OutputGateStateMachine(bufferLimit: 100, buffering: false)
        #expect(!gate.isBuffering)
        #expect(gate.guestFrame(frame(1, size: 80)) == .send)
        #expect(gate.guestFrame(frame(2, size: 80)) == .send, "no buffer, so no limit")
        #expect(gate.seal(epoch: 1) == .sealed(frames: 0))
        #expect(gate.acknowledged(through: 1) == .send([]))
        #expect(gate.statistics.passedFrames == 2)
        #expect(gate.statistics.passedBytes == 160)
        #expect(gate.statistics.heldFrames == 0)
        #expect(gate.statistics.releasedFrames == 0)
        #expect(gate.statistics.lastSealedEpoch == 1)
        #expect(gate.statistics.lastReleasedEpoch == 1)
    }
}

@Suite struct OutputGateModeSwitchTests {
    @Test func stopHoldingReleasesSealedThenOpenFramesAndPassesLaterOnes() {
        var gate = OutputGateStateMachine(bufferLimit: 1 << 20)
        #expect(gate.guestFrame([1]) == .hold)
        _ = gate.seal(epoch: 1)
        #expect(gate.guestFrame([2]) == .hold)
        _ = gate.seal(epoch: 2)
        #expect(gate.guestFrame([3]) == .hold)
        #expect(gate.stopHolding() == [[1], [2], [3]])
        #expect(!gate.isBuffering)
        #expect(gate.statistics.heldFrames == 0 && gate.statistics.heldBytes == 0)
        #expect(gate.guestFrame([4]) == .send)
        #expect(gate.stopHolding() == [], "stopping twice releases nothing twice")
    }

    @Test func startHoldingHoldsFramesUntilTheNextSealedEpochIsAcknowledged() {
        var gate = OutputGateStateMachine(bufferLimit: 1 << 20, buffering: false)
        #expect(gate.guestFrame([1]) == .send)
        gate.startHolding()
        #expect(gate.guestFrame([2]) == .hold)
        #expect(gate.acknowledged(through: 0) == .unsealed(send: [], lastSealed: nil), "nothing sealed: the open frame stays held")
        _ = gate.seal(epoch: 7)
        #expect(gate.acknowledged(through: 7) == .send([[2]]))
    }

    @Test func theBufferLimitStillHoldsAfterHoldingResumes() {
        var gate = OutputGateStateMachine(bufferLimit: 2, buffering: false)
        gate.startHolding()
        #expect(gate.guestFrame([1, 2]) == .hold)
        #expect(gate.guestFrame([3]) == .drop)
    }
}
