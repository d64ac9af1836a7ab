"""Phrases every shop shares: asking to stop or restart messages, and chatter that asks nothing.

They are compared with messages like a trigger's example phrases (triggers.phrases).
Opt-out is compared only with the whole message, with stricter thresholds than a trigger's:
a fragment ("please", "no more") is never a request to leave.
"""

from __future__ import annotations

OPT_OUT = [
    "stop sending me messages",
    "stop sending me these",
    "stop sending me promotional messages",
    "stop all messages to this number",
    "please stop messaging me",
    "don't send me any more offers",
    "don't send me promo messages",
    "never send me offers again",
    "do not message me",
    "don't text me",
    "stop texting me",
    "unsubscribe me",
    "unsubscribe me from offers",
    "remove me from your list",
    "remove my number from your list",
    "I don't want any more messages",
    "don't message me again",
    "do not contact me",
    "no more messages please",
    "opt me out",
    "I want to unsubscribe",
    "messages band karo",
    "message bhejna band karo",
    "mujhe message mat bhejo",
    "mujhe messages nahi chahiye",
    "mera number hata do",
    "मुझे मैसेज मत भेजो",
    "मैसेज बंद करो",
    "no me manden más mensajes",
    "no me envíen más promociones",
    "dejen de enviarme mensajes",
    "dejen de escribirme",
    "quiero darme de baja",
    "no quiero recibir más mensajes",
    "no quiero más ofertas",
]
# Words that name messages, words that refuse them, and words of wanting that a negation
# turns into a refusal ("no more promo msgs", "I don't want your offers"): with these a
# message gets "Reply STOP" even when no phrase above is close to it.
MESSAGING = """
message messages msg msgs mesage mesages text texts sms whatsapp offer offers ofer ofers promo promos
promotion promotions promotional notification notifications alerts marketing ads spam newsletter
newsletters deals subscription मैसेज mensaje mensajes promociones ofertas notificaciones
"""
STOPPING = "stop stp quit enough unsubscribe remove cancel band bandh basta dejen deja"
WANTING = """
send sending want need get receive more anymore again chahiye bhejo bhejna bhejte manden envien recibir
"""
# A message opening with these is a question: it never opts out on its own ("can I unsubscribe
# later?"), it is asked.
QUESTION_WORDS = "can could how what why will would is are may should shall kya kaise como puedo"
# A message that opts out by similarity names what it wants to stop: messages, offers, this
# number ... ("stop sending the parcel" is about a parcel). Compared as normalised words.
ABOUT_MESSAGES = """
message messages msg msgs mesage mesages text texts texting sms whatsapp chat offer offers ofer ofers
promo promos promotion promotions promotional deal deals notification notifications alert alerts
update updates marketing ad ads spam newsletter newsletters these this number list contact
contacting unsubscribe subscribe subscribed subscription opt optout mail emails calls messaging
sandesh मैसेज संदेश नंबर mensaje mensajes promociones ofertas notificaciones numero lista baja
escribirme escriban
"""
# Annoyance that may mean "stop": it gets "Reply STOP to stop all messages", never DND.
OPT_OUT_MAYBE = [
    "why do you keep messaging me",
    "why are you sending me so many messages",
    "too many messages",
    "you message me every day",
    "this is spam",
    "who gave you my number",
    "how did you get my number",
    "I never signed up for this",
    "so annoying all these messages",
    "itne messages kyun bhejte ho",
    "roz roz message aata hai",
    "mera number kahan se mila",
    "por qué me mandan tantos mensajes",
    "quién les dio mi número",
    "esto es spam",
]
OPT_IN = [
    "start sending me messages again",
    "send me offers again",
    "send me your messages again",
    "subscribe me again",
    "resubscribe me",
    "add me back to your list",
    "I unsubscribed by mistake",
    "I want to get your messages again",
    "turn the alerts back on",
    "resume my messages",
    "mujhe phir se messages bhejo",
    "dobara messages bhejo",
    "messages wapas chalu karo",
    "quiero volver a recibir mensajes",
    "vuelvan a enviarme las ofertas",
    "suscríbeme otra vez",
]
# Thanks, praise, small talk and "it's sorted", also when they name what a trigger is about:
# "got my refund, thanks" is not a request for a refund.
CHATTER = [
    "ok",
    "okay thanks",
    "thanks",
    "thank you so much",
    "thanks a lot",
    "got it thanks",
    "received it thank you",
    "got my refund thanks",
    "my order arrived thank you",
    "the package came today",
    "it works now",
    "the issue is solved",
    "no need, it's sorted",
    "never mind",
    "great service",
    "the price was great",
    "the quality is great",
    "the product is great",
    "very happy with the product",
    "will buy again",
    "everything is fine",
    "all good, no problem",
    "thank you for the help",
    "worth the money",
    "your delivery agent was very polite",
    "customer care was very helpful",
    "the delivery was quick",
    "your sale was amazing",
    "I told my friends about you",
    "love it",
    "lol",
    "nice",
    "cool",
    "what is your name",
    "are you a bot",
    "who are you",
    "how are you",
    "shukriya",
    "dhanyavad",
    "bahut badhiya",
    "sab theek hai",
    "problem solve ho gayi",
    "bahut accha product hai",
    "sab sahi hai",
    "gracias",
    "muchas gracias",
    "muy bien",
    "todo bien",
    "todo perfecto",
    "excelente producto",
    "ya llegó, gracias",
]
