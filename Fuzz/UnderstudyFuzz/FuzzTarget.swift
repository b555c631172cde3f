/// One parser of outside bytes under libFuzzer: what it does with an input, and the valid inputs,
/// built with the package's own encoders, that seed its corpus.
///
/// A target may throw away every parse error (errors are the parser's answer to bad bytes); what
/// it must never do is trap, overflow, read out of bounds or allocate without limit. Where a
/// parser promises more (a sealed journal reads back complete), the target checks that too.
struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable ([UInt8]) -> Void
    let seeds: @Sendable () -> [[UInt8]]

    /// Every target, by the name `Bench/fuzz.sh` and the corpus folders use.
    static let all: [FuzzTarget] = [
        .frames, .pages, .diskWrites, .nbdHandshake, .nbdRequests, .toml, .etcdReplies, .qmpReplies, .replicaState, .journal,
        .deviceState, .gateFrames, .importXML,
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}
