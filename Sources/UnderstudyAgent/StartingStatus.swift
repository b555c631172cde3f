/// A node between roles: starting, or stopping (`state` then says why).
public struct StartingStatus: Sendable, Codable, Equatable {
    public var vm: String
    public var state: String
    public var detail: String?

    public init(vm: String, state: String, detail: String? = nil) {
        self.vm = vm
        self.state = state
        self.detail = detail
    }
}
