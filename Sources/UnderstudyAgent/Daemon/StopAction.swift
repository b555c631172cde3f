/// What `understudy run` does on SIGTERM or SIGINT while this node runs the VM.
public enum StopAction: String, Sendable, CaseIterable {
    /// Hand the VM to the backup first (`understudy switchover`) when it is in sync, so that the
    /// VM keeps running and nothing is lost; otherwise stop it.
    case switchover
    /// Stop the VM here.
    case stop
}
