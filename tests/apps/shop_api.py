"""A small shop for the API and dashboard tests: a checkout whose refund can be broken (so a
run ends failed and needs a redrive), and a saga that waits for a signal."""

from __future__ import annotations

from sagaway import App, Permanent


def declare_shop(app: App, state: dict) -> dict:
    """Declare the sagas on `app`; `state["refund_broken"]` makes refunds fail."""

    @app.step()
    def reserve(order: str) -> str:
        return f"hold-{order}"

    @reserve.compensation
    def release(order: str, result=None) -> None:
        state.setdefault("released", []).append(order)

    @app.step()
    def charge(order: str) -> str:
        return f"charge-{order}"

    @charge.compensation
    def refund(order: str, result=None) -> None:
        if state.get("refund_broken"):
            raise ConnectionError("payment provider is down")
        state.setdefault("refunded", []).append(order)

    @app.step()
    def ship(order: str) -> None:
        raise Permanent("out of stock")

    @app.saga()
    def checkout(ctx, order: str) -> str:
        reserve(order)
        charge(order)
        ship(order)
        return order

    @app.saga()
    def confirm(ctx, order: str) -> dict:
        reserve(order)
        answer = ctx.wait("confirmed", timeout=3600)
        return {"order": order, "answer": answer}

    return {"checkout": checkout, "confirm": confirm}
