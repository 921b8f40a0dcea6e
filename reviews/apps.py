from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"

    def ready(self):
        from reviews.receivers import erase_user_decisions
        from workflow.signals import user_erased

        user_erased.connect(erase_user_decisions, dispatch_uid="reviews.user_erased")
