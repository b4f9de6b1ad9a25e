package httpapi

// maskDots replaces the hidden characters of a masked phone number.
const maskDots = "•••"

// MaskPhone returns number with its middle hidden, the way logs and the
// dashboard show numbers by default: "+15550142310" becomes "+1555•••2310".
// A number of 11 or more characters (after an optional "+") keeps its first
// and last four. A shorter one keeps its last two, and one of four or fewer
// keeps nothing. The empty string stays empty.
func MaskPhone(number string) string {
	if number == "" {
		return ""
	}
	plus := ""
	body := number
	if body[0] == '+' {
		plus, body = "+", body[1:]
	}

	runes := []rune(body)
	n := len(runes)
	switch {
	case n >= 11:
		return plus + string(runes[:4]) + maskDots + string(runes[n-4:])
	case n >= 5:
		return maskDots + string(runes[n-2:])
	default:
		return maskDots
	}
}

// logPhone returns number as logs may show it: masked unless
// Security.LogPhoneNumbers is set.
func (s *server) logPhone(number string) string {
	if s.cfg.Security.LogPhoneNumbers {
		return number
	}
	return MaskPhone(number)
}
