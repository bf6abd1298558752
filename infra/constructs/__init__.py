"""One construct per concern: data, scheduling, messaging, functions, api, monitoring."""
