import ArgumentParser
import UnderstudyTransport

/// What every `certs` subcommand asks: the CA's directory and how long the certificates it
/// issues stay valid.
struct CertificateAuthorityOptions: ParsableArguments {
    @Option(name: .long, help: "The CA's directory: made with mode 0700 by `certs init`, read by `certs add` (ca.pem and ca.key).")
    var dir: String

    @Option(name: .long, help: "Validity of the node certificates issued, in days.")
    var days: Int = CertificateAuthority.defaultValidDays

    func validate() throws {
        guard days > 0 && days <= 36500 else { throw ValidationError("--days must be between 1 and 36500") }
    }
}
