from rest_framework.routers import SimpleRouter

from .api import WorldViewSet

router = SimpleRouter()
router.register("", WorldViewSet, basename="world")

urlpatterns = router.urls
