"""Sign in and out."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from chatman.admin.blueprint import bp
from chatman.admin.security import AdminUser, count_failure, forget_failures, locked_for_s, safe_next
from chatman.auth.accounts import authenticate_user
from chatman.extensions import request_session


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


@bp.route("/login", methods=["GET", "POST"])
def login():
    target = safe_next(request.args.get("next"), url_for("admin.dashboard"))
    if current_user.is_authenticated:
        return redirect(target)
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        email = form.email.data
        wait = locked_for_s(email)
        if wait:
            minutes = max(1, round(wait / 60))
            form.form_errors.append(
                f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
            )
            return render_template("admin/login.html", form=form), 429, {"Retry-After": str(wait)}
        user = authenticate_user(request_session(), email, form.password.data)
        if user is None:
            count_failure(email)
            form.form_errors.append("That e-mail and password do not match a user.")
            status = 401
        else:
            forget_failures(email)
            login_user(AdminUser(user))
            return redirect(target)
    elif request.method == "POST":
        status = 400
    return render_template("admin/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    logout_user()
    flash("You are signed out.")
    return redirect(url_for("admin.login"))
