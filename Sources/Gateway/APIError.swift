import Hummingbird
import Wire

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
public struct APIError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var message: String
    /// OpenAI's `type`: "invalid_request_error", "authentication_error", "server_error", …
    public var type: String
    public var code: String?
    /// The request field at fault, if one is.
    public var param: String?
    /// The `outcome` label this error counts under in `squat_http_requests_total`.
    public var outcome: String

    public init(
        status: HTTPResponse.Status, message: String, type: String, code: String?, param: String? = nil,
        outcome: String
    ) {
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.outcome = outcome
    }

    public var body: JSONValue {
        [
            "error": [
                "message": JSONValue(message), "type": JSONValue(type), "param": JSONValue(param),
                "code": JSONValue(code),
            ]
        ]
    }

    static func badRequest(_ message: String, param: String? = nil, code: String? = "invalid_request") -> APIError {
        APIError(
            status: .badRequest, message: message, type: "invalid_request_error", code: code, param: param,
            outcome: "bad_request")
    }

    /// A field of the wrong type or out of range.
    static func badField(_ param: String, _ problem: String) -> APIError {
        badRequest("invalid '\(param)': \(problem)", param: param, code: "invalid_value")
    }

    static func unauthorized(_ message: String) -> APIError {
        APIError(
            status: .unauthorized, message: message, type: "invalid_request_error", code: "invalid_api_key",
            outcome: "unauthorized")
    }

    static func notFound(_ message: String, code: String = "not_found", param: String? = nil) -> APIError {
        APIError(
            status: .notFound, message: message, type: "invalid_request_error", code: code, param: param,
            outcome: "not_found")
    }

    static func unavailable(_ message: String) -> APIError {
        APIError(
            status: .serviceUnavailable, message: message, type: "server_error", code: "unavailable",
            outcome: "unavailable")
    }

    static func internalError(_ message: String) -> APIError {
        APIError(
            status: .internalServerError, message: message, type: "server_error", code: "internal_error",
            outcome: "error")
    }

    /// The coordinator's refusal or failure of a request, as an HTTP error.
    static func from(_ e: ErrorReply) -> APIError {
        switch e.code {
        case .invalidRequest:
            return badRequest(e.message)
        case .promptTooLong:
            return badRequest(e.message, param: "prompt", code: "context_length_exceeded")
        case .overloaded:
            return APIError(
                status: .tooManyRequests, message: e.message, type: "server_error", code: "overloaded",
                outcome: "overloaded")
        case .unavailable:
            return unavailable(e.message)
        default:
            return internalError(e.message.isEmpty ? "the coordinator failed the request (\(e.code))" : e.message)
        }
    }
}
