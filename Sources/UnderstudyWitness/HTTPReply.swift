/// An HTTP reply: the status code and the body, de-chunked.
struct HTTPReply: Sendable, Equatable {
    var status: Int
    var body: [UInt8]
}
