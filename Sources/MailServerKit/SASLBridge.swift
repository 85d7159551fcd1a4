// What both mail servers need between the SASL backend and their pure session state machines.
import SASLAuth
import SMTPCore

/// Carries a SASL session to and from the thread pool.
public struct SASLBox: @unchecked Sendable {
    public let session: (any SASLSession)?
    public init(_ s: (any SASLSession)?) { session = s }
}

extension AuthResult {
    /// The session machines' view of a SASL step. A cancelled exchange counts as failed
    /// credentials (RFC 4954 §4, RFC 5034 §4: both answer with the failure reply).
    public init(_ o: SASLOutcome) {
        switch o {
        case .challenge(let b): self = .challenge(b)
        case .success(let id): self = .success(identity: id)
        case .failure(.badCredentials), .failure(.cancelled): self = .badCredentials
        case .failure(.malformed): self = .malformed
        case .failure(.unknownMechanism): self = .unknownMechanism
        case .failure(.tooWeak): self = .tooWeak
        case .failure(.temporary(let why)): self = .temporary(why)
        }
    }
}
