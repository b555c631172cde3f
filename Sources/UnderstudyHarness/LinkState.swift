import Synchronization

/// What every connection of one emulator shares: the shape, whether the link is silent, and
/// the delivered-byte counters.
final class LinkState: Sendable {
    struct State {
        var shape: LinkEmulator.Shape
        /// Cut by `.silence`: nothing is read or delivered.
        var silent = false
        /// Indexed by `ProxiedConnection.Direction`.
        var delivered = [0, 0]
    }

    let state: Mutex<State>

    init(shape: LinkEmulator.Shape) { state = Mutex(State(shape: shape)) }
}
