import Foundation

/// Records the error a background callback reports.
public final class ErrorRecorder<Failure: Error>: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: Failure?
    public init() {}
    public func record(_ error: Failure) { lock.lock(); if recorded == nil { recorded = error }; lock.unlock() }
    public var error: Failure? { lock.lock(); defer { lock.unlock() }; return recorded }
}
