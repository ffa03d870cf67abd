import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from apps.accounts import services

PASSWORD_ATTEMPTS = 3
EMAIL_ATTEMPTS = 3


class Command(BaseCommand):
    help = (
        "Create a user who signs in with email and password; --admin makes an operator "
        "with every right. Asks for what is not given; never echoes the password."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("--email", help="the email address (also the username)")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
        parser.add_argument(
            "--admin", action="store_true", help="staff and superuser rights"
        )
        parser.add_argument(
            "--world", help="make the user an attendee of this world (its id)"
        )

    def execute(self, *args, **options):
        self.stdin = options.get("stdin", sys.stdin)
        return super().execute(*args, **options)

    def handle(
        self,
        *,
        email: str | None,
        password_stdin: bool,
        admin: bool,
        world: str | None,
        **options,
    ) -> None:
        interactive = bool(getattr(self.stdin, "isatty", lambda: False)())
        world_obj = self._world(world) if world else None
        if email:
            # Checked before any password is read: a bad --email costs none.
            try:
                email = services.validate_new_email(email)
            except services.AccountError as exc:
                if password_stdin or not interactive:
                    raise CommandError(f"{exc} Nothing was created.") from exc
                self.stderr.write(str(exc))
                email = None
        if not email:
            if password_stdin or not interactive:
                raise CommandError(
                    "No email given; pass --email (standard input is not a terminal "
                    "or carries the password)."
                )
            email = self._ask_email()
        if password_stdin:
            password = self._read_password_stdin()
            user = self._create(email, password, admin, world_obj)
        elif interactive:
            user = self._create_asking(email, admin, world_obj)
        else:
            raise CommandError(
                "No password given and standard input is not a terminal; "
                "pipe it in with --password-stdin."
            )
        kind = "Admin" if admin else "User"
        if user.world_id:
            self.stdout.write(
                f"Attendee of {user.world_id} with uid {user.token_id}; give them a "
                f"token with: generate_token {user.world_id} --uid {user.token_id}"
            )
        self.stdout.write(
            self.style.SUCCESS(f"{kind} {user.email} created (id {user.pk}).")
        )

    def _world(self, world_id: str):
        try:
            return services.find_world(world_id)
        except services.AccountError as exc:
            raise CommandError(f"{exc}") from exc

    def _ask(self, prompt: str) -> str:
        self.stdout.write(prompt, ending="")
        self.stdout.flush()
        answer = self.stdin.readline()
        if not answer:
            raise CommandError("No answer (end of input); nothing was created.")
        return answer.strip()

    def _ask_email(self) -> str:
        # Before the password: a bad email must not cost the operator two passwords.
        for _ in range(EMAIL_ATTEMPTS):
            try:
                return services.validate_new_email(self._ask("Email: "))
            except services.AccountError as exc:
                self.stderr.write(str(exc))
        raise CommandError(
            f"No acceptable email after {EMAIL_ATTEMPTS} tries; nothing was created."
        )

    def _read_password_stdin(self) -> str:
        line = self.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CommandError(
                "Standard input carried no password; "
                'pipe it in, e.g. `printf %s "$PW" | manage.py create_user ...`.'
            )
        return password

    def _create(self, email, password, admin, world):
        try:
            return services.create_user(
                email=email, password=password, admin=admin, world=world
            )
        except services.AccountError as exc:
            raise CommandError(str(exc)) from exc

    def _create_asking(self, email, admin, world):
        for attempt in range(1, PASSWORD_ATTEMPTS + 1):
            password = getpass.getpass("Password: ")
            if not password:
                self.stderr.write("The password must not be empty.")
                continue
            if getpass.getpass("Password (again): ") != password:
                self.stderr.write("The passwords do not match.")
                continue
            try:
                return services.create_user(
                    email=email, password=password, admin=admin, world=world
                )
            except services.PasswordRejected as exc:
                if attempt == PASSWORD_ATTEMPTS:
                    raise CommandError(str(exc)) from exc
                self.stderr.write(str(exc))
            except services.AccountError as exc:
                raise CommandError(str(exc)) from exc
        raise CommandError(
            f"No acceptable password after {PASSWORD_ATTEMPTS} tries; nothing was created."
        )
