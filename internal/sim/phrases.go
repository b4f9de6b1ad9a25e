package sim

// The phrase bank: a few invented businesses whose calls the simulator plays.
// Every sentence is written for this package. Placeholders in braces are
// filled per call: {first}, {name} (first and last name), {n} (six digits),
// {spoken} (those digits spaced out as a caller reads them) and {code} (a
// booking reference).

// turn is one entry of a scripted conversation: an utterance when role is set,
// otherwise a tool call with JSON arguments and a JSON result.
type turn struct {
	role   string
	text   string
	tool   string
	args   string
	result string
}

func agent(text string) turn { return turn{role: roleAgent, text: text} }
func user(text string) turn  { return turn{role: roleUser, text: text} }

func toolCall(name, args, result string) turn {
	return turn{tool: name, args: args, result: result}
}

// step is a short exchange about one topic. Body steps run in order. Extra
// steps are drawn at random to fill longer calls, and they always start with
// the agent.
type step struct {
	node  string // conversation-flow node the step belongs to
	turns []turn
}

// scenario is one kind of call an agent handles.
type scenario struct {
	key          string // stable name from which the agent id is derived
	agentName    string
	agentVersion int
	direction    string
	campaign     string
	codePrefix   string

	dynamicVariables string // JSON object template
	collected        string // collected_dynamic_variables template
	summary          string
	customAnalysis   string // custom_analysis_data template

	opening []turn
	body    []step
	extra   []step
	closing []turn
}

var scenarios = []*scenario{
	{
		key:              "dental-reminder",
		agentName:        "Birchwood Reminder Agent",
		agentVersion:     3,
		direction:        directionOutbound,
		campaign:         "dental-reminders",
		codePrefix:       "BD",
		dynamicVariables: `{"customer_name":"{name}","appointment_time":"Tuesday at 4:00 PM"}`,
		collected:        `{"new_appointment_slot":"Friday 2:15 PM"}`,
		summary:          "The agent reached {first} about a Tuesday cleaning and moved it to Friday at 2:15 PM ({code}).",
		customAnalysis:   `{"rescheduled":true,"new_slot":"Friday 2:15 PM"}`,
		opening: []turn{
			agent("Hi, this is the virtual assistant from Birchwood Dental, calling for {first}. Do you have a minute?"),
			user("Sure, what's this about?"),
		},
		body: []step{
			{node: "Confirm appointment", turns: []turn{
				agent("You have a cleaning booked for Tuesday at 4:00 PM. Can you still make it?"),
				user("Hmm, I have a meeting then. Is there anything later in the week?"),
				agent("Let me look at the schedule."),
				toolCall("check_availability", `{"after":"tuesday","duration_min":45}`, `{"slots":["Friday 9:00 AM","Friday 2:15 PM"]}`),
				agent("I can offer Friday at 9:00 AM or Friday at 2:15 PM. Which would you like?"),
				user("Friday at 2:15 works for me."),
			}},
			{node: "Reschedule", turns: []turn{
				agent("Great, I'm moving your appointment now."),
				toolCall("reschedule_appointment", `{"slot":"friday 14:15","patient":"{name}"}`, `{"status":"confirmed","confirmation":"{code}"}`),
				agent("All set. Your new time is Friday at 2:15 PM, confirmation {spoken}."),
				user("Thanks, that's perfect."),
			}},
		},
		extra: []step{
			{node: "Reminders", turns: []turn{
				agent("Would you like a text reminder the day before?"),
				user("Yes, a text would be helpful."),
			}},
			{node: "Insurance", turns: []turn{
				agent("Please bring your insurance card, since our records show it expired last month."),
				user("Oh, right. I'll bring the new one."),
			}},
			{node: "Questions", turns: []turn{
				agent("Do you have any questions about the visit?"),
				user("Do I need to arrive early?"),
				agent("Ten minutes early is plenty, so we can update your forms."),
			}},
			{node: "Contact details", turns: []turn{
				agent("Is this still the best number to reach you?"),
				user("Yes, this number is fine."),
			}},
		},
		closing: []turn{
			agent("Is there anything else I can help you with today?"),
			user("No, that's all. Bye."),
			agent("Thanks, {first}. Have a lovely day!"),
		},
	},
	{
		key:              "parcel-support",
		agentName:        "Northline Parcel Support",
		agentVersion:     5,
		direction:        directionInbound,
		campaign:         "support-line",
		codePrefix:       "NL",
		dynamicVariables: `{"customer_name":"{name}","tracking_number":"NL{n}"}`,
		collected:        `{"tracking_number":"NL{n}","delivery_note":"leave at back door"}`,
		summary:          "{first} asked about a late parcel (NL{n}). It is due tomorrow before noon, and a back-door delivery note was added.",
		customAnalysis:   `{"parcel_found":true,"note_added":true}`,
		opening: []turn{
			agent("Thanks for calling Northline Parcel. How can I help you today?"),
			user("Hi, I'm checking on a package that was supposed to arrive yesterday."),
		},
		body: []step{
			{node: "Track parcel", turns: []turn{
				agent("I can help with that. What's the tracking number?"),
				user("It's N L {spoken}."),
				agent("One moment while I look that up."),
				toolCall("track_parcel", `{"tracking_number":"NL{n}"}`, `{"status":"at_local_depot","eta":"tomorrow before 12:00"}`),
				agent("Your parcel is at the local depot and should arrive tomorrow before noon."),
				user("Oh good. Can the driver leave it at the back door?"),
			}},
			{node: "Delivery note", turns: []turn{
				agent("Sure, I'll add a delivery note."),
				toolCall("add_delivery_note", `{"tracking_number":"NL{n}","note":"leave at back door"}`, `{"saved":true}`),
				agent("Done. The driver will see the note when they arrive."),
				user("Great, thank you."),
			}},
		},
		extra: []step{
			{node: "Updates", turns: []turn{
				agent("Would you like text updates for this delivery?"),
				user("Yes please, to this number."),
			}},
			{node: "Signature", turns: []turn{
				agent("Do you have any other questions about the delivery?"),
				user("Will I need to sign for it?"),
				agent("No, this parcel doesn't need a signature."),
			}},
			{node: "Recipient", turns: []turn{
				agent("Can I confirm the parcel is addressed to {name}?"),
				user("Yes, that's me."),
			}},
			{node: "Missed delivery", turns: []turn{
				agent("If nobody is home, the driver follows your note or takes it to the pickup point on Mill Road."),
				user("Okay, good to know."),
			}},
		},
		closing: []turn{
			agent("Is there anything else I can do for you?"),
			user("No, that's everything. Thanks."),
			agent("You're welcome. Have a good day!"),
		},
	},
	{
		key:              "plumbing-intake",
		agentName:        "Riverbend Plumbing Intake",
		agentVersion:     8,
		direction:        directionInbound,
		campaign:         "inbound-service",
		codePrefix:       "RB",
		dynamicVariables: `{"customer_name":"{name}","service_area":"north"}`,
		collected:        `{"job_id":"{code}","visit_window":"Wednesday 8-10 AM"}`,
		summary:          "{first} reported a banging water heater with no leak. A technician visit was booked for Wednesday 8-10 AM ({code}).",
		customAnalysis:   `{"booked":true,"issue":"water_heater_noise"}`,
		opening: []turn{
			agent("Riverbend Plumbing, this is the virtual assistant. What can I do for you?"),
			user("Hi, my water heater keeps making a banging noise."),
		},
		body: []step{
			{node: "Triage", turns: []turn{
				agent("Sorry to hear that. Is any water leaking around the tank?"),
				user("No leaks, just the noise, mostly in the morning."),
			}},
			{node: "Find slot", turns: []turn{
				agent("That's often sediment in the tank. Let me find a technician visit for you."),
				toolCall("find_technician_slot", `{"service":"water_heater","urgency":"normal"}`, `{"slots":["Wednesday 8-10 AM","Wednesday 1-3 PM"]}`),
				agent("I have Wednesday between 8 and 10 AM, or between 1 and 3 PM."),
				user("The morning slot, please."),
			}},
			{node: "Book visit", turns: []turn{
				agent("Booking that now."),
				toolCall("book_visit", `{"slot":"wed 08:00-10:00","service":"water_heater","customer":"{name}"}`, `{"job_id":"{code}","status":"booked"}`),
				agent("You're booked for Wednesday between 8 and 10 AM. The technician will call when they're on the way."),
				user("Perfect, thanks."),
			}},
		},
		extra: []step{
			{node: "Pricing", turns: []turn{
				agent("The diagnostic visit is 89 dollars, and it's waived if you go ahead with the repair."),
				user("Okay, that sounds fair."),
			}},
			{node: "Safety", turns: []turn{
				agent("Do you have any questions before the visit?"),
				user("Should I turn the heater off until then?"),
				agent("You can leave it on, but turning the temperature down a little will help."),
			}},
			{node: "Access", turns: []turn{
				agent("Is there easy parking near the house?"),
				user("Yes, there's a driveway you can use."),
			}},
			{node: "Visit length", turns: []turn{
				agent("The visit usually takes about an hour, depending on what the technician finds."),
				user("That's fine, I'll be working from home."),
			}},
		},
		closing: []turn{
			agent("Is there anything else I can help with?"),
			user("No, that's it. Bye."),
			agent("Thanks for calling Riverbend Plumbing. Goodbye!"),
		},
	},
	{
		key:              "bistro-reservations",
		agentName:        "Lumen Bistro Reservations",
		agentVersion:     4,
		direction:        directionInbound,
		campaign:         "reservations",
		codePrefix:       "LB",
		dynamicVariables: `{"customer_name":"{name}","party_size":"4"}`,
		collected:        `{"reservation_id":"{code}","slot":"Saturday 8:15 PM"}`,
		summary:          "{first} booked a table for four on Saturday at 8:15 PM ({code}) because 7:30 PM was full.",
		customAnalysis:   `{"party_size":4,"booked":true}`,
		opening: []turn{
			agent("Good evening, Lumen Bistro reservations. How can I help?"),
			user("Hi, I'd like to book a table for four on Saturday."),
		},
		body: []step{
			{node: "Party details", turns: []turn{
				agent("Lovely. What time were you thinking?"),
				user("Around seven thirty, if possible."),
			}},
			{node: "Check tables", turns: []turn{
				agent("Let me check that for you."),
				toolCall("check_tables", `{"party_size":4,"day":"saturday","time":"19:30"}`, `{"available":["19:00","20:15"]}`),
				agent("Seven thirty is full, but I have seven o'clock or a quarter past eight."),
				user("Quarter past eight, please."),
			}},
			{node: "Confirm booking", turns: []turn{
				agent("Can I have a name for the booking?"),
				user("It's {name}."),
				agent("Thank you."),
				toolCall("create_reservation", `{"name":"{name}","party_size":4,"slot":"saturday 20:15"}`, `{"reservation_id":"{code}"}`),
				agent("You're confirmed for four people on Saturday at 8:15 PM, reference {spoken}."),
				user("Great, thanks."),
			}},
		},
		extra: []step{
			{node: "Menu", turns: []turn{
				agent("Do you have any questions about the menu?"),
				user("Do you have vegetarian options?"),
				agent("Yes, about half the menu is vegetarian, and the kitchen can adapt most dishes."),
			}},
			{node: "Occasion", turns: []turn{
				agent("Is it a special occasion?"),
				user("It's my sister's birthday, actually."),
				agent("Wonderful, I'll let the team know."),
			}},
			{node: "Directions", turns: []turn{
				agent("If you're driving, there's a public garage on Elm Street, two minutes away."),
				user("Good to know, thanks."),
			}},
			{node: "Policy", turns: []turn{
				agent("We hold tables for fifteen minutes, so please call if you're running late."),
				user("Will do."),
			}},
		},
		closing: []turn{
			agent("Is there anything else I can help you with?"),
			user("No, that's all. See you Saturday."),
			agent("See you then. Have a nice evening!"),
		},
	},
	{
		key:              "energy-billing",
		agentName:        "Cedar Valley Energy Billing",
		agentVersion:     2,
		direction:        directionOutbound,
		campaign:         "billing-reminders",
		codePrefix:       "CV",
		dynamicVariables: `{"customer_name":"{name}","amount_due":"84.20"}`,
		collected:        `{"autopay_enabled":"true","customer_ref":"CV-{n}"}`,
		summary:          "The agent reminded {first} of an 84.20 bill due Friday, and {first} turned on automatic payments with the card on file.",
		customAnalysis:   `{"autopay_enabled":true}`,
		opening: []turn{
			agent("Hello, this is the automated assistant from Cedar Valley Energy, calling for {first}. Is this a good time?"),
			user("Yes, go ahead."),
		},
		body: []step{
			{node: "Bill reminder", turns: []turn{
				agent("Your latest bill of 84 dollars and 20 cents is due on Friday. Would you like to pay it now?"),
				user("Could I set up automatic payments instead?"),
			}},
			{node: "Account check", turns: []turn{
				agent("Of course. Let me check your account."),
				toolCall("get_account", `{"customer_ref":"CV-{n}"}`, `{"autopay_eligible":true,"card_on_file":"ending 4417"}`),
				agent("I see a card ending in 4 4 1 7 on file. Shall I use it for automatic payments?"),
				user("Yes, please do."),
			}},
			{node: "Enable autopay", turns: []turn{
				agent("Setting that up now."),
				toolCall("enable_autopay", `{"customer_ref":"CV-{n}","method":"card_on_file"}`, `{"enabled":true,"first_charge":"friday"}`),
				agent("Done. Automatic payments start with this bill on Friday."),
				user("Thanks, that's much easier."),
			}},
		},
		extra: []step{
			{node: "Paperless", turns: []turn{
				agent("Would you like paperless bills as well?"),
				user("Sure, email is fine."),
			}},
			{node: "Confirmation", turns: []turn{
				agent("Do you have any questions about the payments?"),
				user("Will I get a confirmation email?"),
				agent("Yes, you'll receive one within the hour."),
			}},
			{node: "Payment date", turns: []turn{
				agent("You can change the payment date any time in your online account."),
				user("Good, that helps."),
			}},
			{node: "Usage", turns: []turn{
				agent("Your usage this month was a little lower than last year, by the way."),
				user("Oh, nice to hear."),
			}},
		},
		closing: []turn{
			agent("Is there anything else I can help you with?"),
			user("No, thank you. Bye."),
			agent("Thanks, {first}. Have a good day!"),
		},
	},
}

// Invented names; a few carry accents so that payloads contain non-ASCII text.
var (
	firstNames = []string{
		"Avery", "Priya", "Mateo", "Hannah", "Kofi", "Lena", "Omar", "Grace",
		"Tomas", "Mei", "Elliot", "Sofia", "Ravi", "Nora", "Felix", "Zoë", "Renée",
	}
	lastNames = []string{
		"Whitfield", "Okafor", "Lindqvist", "Moreno", "Castellano", "Brandt",
		"Nakamura", "Osei", "Halvorsen", "Delgado", "Fitzroy", "Kowalski",
	}
)
