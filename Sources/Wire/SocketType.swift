import CZeroMQ

/// The ZeroMQ socket patterns the cluster uses.
public enum SocketType: Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Addresses peers by routing id: the coordinator's side of client and worker links.
    case router
    /// Asynchronous request side: clients and workers talking to the coordinator.
    case dealer
    /// Fan-out of the data plane: a stage sending activations downstream.
    case push
    /// Fan-in of the data plane: a stage receiving activations.
    case pull
    /// Exclusive pair: tests, and in-process links.
    case pair

    var rawValue: Int32 {
        switch self {
        case .router: ZMQ_ROUTER
        case .dealer: ZMQ_DEALER
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        case .pair: ZMQ_PAIR
        }
    }

    public var description: String {
        switch self {
        case .router: "ROUTER"
        case .dealer: "DEALER"
        case .push: "PUSH"
        case .pull: "PULL"
        case .pair: "PAIR"
        }
    }
}
