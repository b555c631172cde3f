import UnderstudyProtocol
@testable import UnderstudyReplica

extension FuzzTarget {
    /// The replica's state file as read back from storage. Its SHA-256 would turn away nearly
    /// every mutation, so after an odd first byte the input is taken as the body and given the
    /// right checksum: those reach the field parsing; after an even one it is the whole file.
    static let replicaState = FuzzTarget(name: "replica-state", run: { bytes in
        guard let mode = bytes.first else { return }
        let rest = Array(bytes.dropFirst())
        let file = mode & 1 == 0 ? rest : ReplicaStateSamples.sealed(body: rest)
        guard let state = try? ReplicaState(decoding: file, path: "fuzz/state") else { return }
        // What decodes must encode back to the same file when written in the layout it was read
        // in: the state is written and read by this code only. Another layout (USSTATE2; a
        // USSTATE4 file of one disk, which is written as USSTATE3) must convert to the same state.
        let encoded = state.encoded()
        if encoded.prefix(ReplicaState.magic.count).elementsEqual(file.prefix(ReplicaState.magic.count)) {
            precondition(encoded == file, "the state file does not round-trip")
        } else {
            precondition((try? ReplicaState(decoding: state.encoded(), path: "fuzz/state")) == state, "the old state file does not convert")
        }
    }, seeds: {
        let states = [
            ReplicaState(identity: ProtocolSamples.identity),
            ReplicaState(identity: ProtocolSamples.identity, generation: 12, phase: .committed, committedEpoch: 4711,
                         deviceState: Array("QEVM device state".utf8)),
            ReplicaState(identity: ProtocolSamples.identity, generation: 13, resetReason: "fenced: witness term 8"),
        ]
        return states.map { [0] + $0.encoded() } + states.map { [1] + $0.encoded().dropFirst(ReplicaState.magic.count).dropLast(EpochDigest.size) }
    })
}
