/// The outcome of checking a request against the export.
public enum NBDRequestCheck: Sendable, Equatable {
    /// The request is valid: execute it.
    case execute(NBDCommand)
    /// Answer with `error` without touching the image, after reading and dropping the `discard`
    /// data bytes that follow the request header (a refused write's data).
    case reject(NBDError, discard: Int)
}
