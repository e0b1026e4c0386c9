"""Azure Functions entry points. Each trigger delegates to ``shared``; no logic lives here."""

import azure.functions as func

from shared.entry import run_queue_poll, run_timer_poll

app = func.FunctionApp()


@app.timer_trigger(schedule="%POLL_SCHEDULE%", arg_name="timer", run_on_startup=False,
                   use_monitor=True)
def poll_mailboxes(timer: func.TimerRequest, context: func.Context) -> None:
    """Deliver every new message of every configured mailbox to Blob Storage."""
    run_timer_poll(past_due=timer.past_due, context=context)


@app.queue_trigger(arg_name="message", queue_name="%POLL_QUEUE%", connection="MAIL_STORAGE")
def poll_mailbox(message: func.QueueMessage, context: func.Context) -> None:
    """Fan-out mode: deliver the new messages of the one mailbox this message names."""
    run_queue_poll(message.get_body().decode(), dequeue_count=message.dequeue_count or 1,
                   context=context)
