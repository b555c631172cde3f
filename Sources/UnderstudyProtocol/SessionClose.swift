/// Ends a session with a reason (REJECT during the handshake, GOODBYE afterwards).
public struct SessionClose: Sendable, Equatable {
    public var code: CloseCode
    public var message: String

    public init(code: CloseCode, message: String) {
        self.code = code
        self.message = message
    }
}
